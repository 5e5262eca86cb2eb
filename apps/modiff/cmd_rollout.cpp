// `modiff rollout`: episodes of a random or zero policy, with return and length statistics.
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "json_output.h"
#include "modiff/common/summary.h"
#include "modiff/envs/rollout.h"

namespace modiff::cli {
void add_rollout_command(CLI::App& app) {
  struct Args {
    std::string env, policy = "random";
    int episodes = 10, threads = 0;
    uint64_t seed = 0;
    bool json = false;
  };
  auto args = std::make_shared<Args>();
  auto* cmd = app.add_subcommand("rollout", "Run episodes of a random or zero policy and summarize return and length");
  cmd->add_option("--env", args->env, "Environment id or PyBullet name (see `modiff envs`)")->required();
  cmd->add_option("--policy", args->policy, "random (uniform in [-1, 1]) or zero")->capture_default_str()->check(one_of({"random", "zero"}));
  cmd->add_option("--episodes", args->episodes, "Number of episodes")->capture_default_str()->check(integer_in(1, 1000000));
  cmd->add_option("--seed", args->seed, "Seed: episode e depends on (seed, e) alone")->capture_default_str()->check(seed_value());
  cmd->add_option("--threads", args->threads, "Worker threads (0 = all cores); results do not depend on it")
      ->capture_default_str()
      ->check(thread_count());
  cmd->add_flag("--json", args->json, "Print JSON");
  cmd->callback([args] {
    const auto& spec = envs::find_env(args->env);
    envs::RolloutOptions opt;
    opt.policy = envs::parse_simple_policy(args->policy);
    opt.episodes = args->episodes;
    opt.seed = args->seed;
    limit_threads(args->threads);
    auto outcomes = envs::run_rollouts(spec, opt);
    std::vector<double> returns, lengths;
    int terminated = 0;
    for (const auto& o : outcomes) {
      returns.push_back(o.episode_return);
      lengths.push_back(o.length);
      terminated += o.terminated;
    }
    const Summary r = summarize(returns), l = summarize(lengths);
    if (args->json) {
      nlohmann::json out = {{"env", spec.id},
                            {"policy", args->policy},
                            {"episodes", args->episodes},
                            {"seed", args->seed},
                            {"return", summary_json(r)},
                            {"length", summary_json(l)},
                            {"terminated", terminated},
                            {"normalized_return_mean", envs::normalized_score(spec, r.mean)}};
      std::cout << out.dump(2) << "\n";
      return;
    }
    std::printf("%s, %s policy, %d episodes, seed %llu\n", spec.id.c_str(), args->policy.c_str(), args->episodes,
                static_cast<unsigned long long>(args->seed));
    std::printf("  return  mean %10.3f  std %9.3f  min %10.3f  max %10.3f  (normalized mean %.2f)\n", r.mean, r.std,
                r.min, r.max, envs::normalized_score(spec, r.mean));
    std::printf("  length  mean %10.1f  std %9.1f  min %10.0f  max %10.0f  (%d terminated, %d truncated)\n", l.mean,
                l.std, l.min, l.max, terminated, args->episodes - terminated);
  });
}

}  // namespace modiff::cli
