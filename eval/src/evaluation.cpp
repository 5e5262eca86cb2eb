#include "modiff/eval/evaluation.h"

#include <chrono>
#include <sstream>

#include "modiff/agents/inference_policy.h"
#include "modiff/common/error.h"
#include "modiff/eval/evaluate.h"

namespace modiff::eval {

std::vector<uint64_t> parse_seed_list(const std::string& list) {
  std::vector<uint64_t> seeds;
  std::stringstream ss(list);
  for (std::string item; std::getline(ss, item, ',');) {
    try {
      size_t used = 0;
      const auto dash = item.find('-');
      if (dash == std::string::npos) {
        seeds.push_back(std::stoull(item, &used));
        if (used != item.size()) throw std::invalid_argument(item);
      } else {
        const uint64_t lo = std::stoull(item.substr(0, dash)), hi = std::stoull(item.substr(dash + 1));
        if (hi < lo || hi - lo > 100000) throw std::invalid_argument(item);
        for (uint64_t s = lo; s <= hi; ++s) seeds.push_back(s);
      }
    } catch (const std::exception&) {
      throw Error("--seeds: '" + item + "' is not a seed or a range like 0-4");
    }
  }
  if (seeds.empty()) throw Error("--seeds: give at least one seed");
  return seeds;
}

nlohmann::json aggregate_json(const AggregateWithIntervals& a) {
  const auto& p = a.point;
  auto pair = [](const Interval& i) { return nlohmann::json::array({i.lo, i.hi}); };
  return {{"median", p.median}, {"iqr", p.iqr}, {"iqm", p.iqm}, {"mean", p.mean}, {"std", p.std}, {"min", p.min},
          {"max", p.max},       {"count", p.count},
          {"ci95", {{"median", pair(a.median)}, {"iqr", pair(a.iqr)}, {"iqm", pair(a.iqm)}, {"mean", pair(a.mean)}}}};
}

Evaluation evaluate_pairing(const std::string& diffusion, const std::string& guidance, const EvalSettings& s,
                            const std::function<void(long, int, int)>& progress) {
  agents::InferenceOptions io;
  io.device = s.device;
  // Without guidance the policy draws one sample: the candidates setting is for guided pairings.
  const bool guided = !guidance.empty() && guidance != "none";
  io.candidates = guided ? s.candidates : 0;
  io.select = s.select;
  io.temperature = s.temperature;
  io.chunk = s.chunk;
  Evaluation r;
  auto policy = agents::InferencePolicy::load(diffusion, guidance, io, &r.warnings);
  const auto& env = env_for_policy(policy, s.env);
  EvalOptions opt;
  opt.seeds = s.seeds;
  opt.episodes = s.episodes;
  opt.max_envs = s.max_envs;
  opt.progress = progress;
  const auto t0 = std::chrono::steady_clock::now();
  long env_steps = 0;
  const auto episodes = evaluate(policy, env, opt, &env_steps);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  r.per_seed = per_seed_means(episodes, opt.seeds);
  r.aggregate = aggregate_with_intervals({r.per_seed}, s.bootstrap_reps, s.bootstrap_seed);
  nlohmann::json eps = nlohmann::json::array(), seeds = nlohmann::json::array();
  for (const auto& e : episodes)
    eps.push_back({{"seed", e.seed}, {"episode", e.episode}, {"return", e.episode_return}, {"length", e.length},
                   {"normalized_score", e.normalized_score}, {"terminated", e.terminated}});
  for (size_t i = 0; i < opt.seeds.size(); ++i)
    seeds.push_back({{"seed", opt.seeds[i]}, {"mean_normalized_score", r.per_seed[i]}});
  r.json = {{"diffusion", diffusion},
            {"guidance", policy.guidance() ? guidance : "none"},
            {"env", env.id},
            {"candidates", policy.candidates()},
            {"select", policy.guidance() ? policy.select() : "none"},
            {"env_steps", env_steps},
            {"seconds", seconds},
            {"env_steps_per_s", env_steps / std::max(seconds, 1e-9)},
            {"warnings", r.warnings},
            {"episodes", eps},
            {"per_seed", seeds},
            {"aggregate", aggregate_json(r.aggregate)}};
  return r;
}

}  // namespace modiff::eval
