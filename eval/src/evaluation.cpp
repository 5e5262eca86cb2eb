#include "modiff/eval/evaluation.h"

#include <charconv>
#include <map>
#include <chrono>
#include <set>
#include <sstream>

#include "modiff/agents/inference_policy.h"
#include "modiff/common/error.h"
#include "modiff/eval/evaluate.h"

namespace modiff::eval {

namespace {

// The whole of `text` as a seed (digits only: no sign, no trailing characters, no overflow).
bool whole_seed(const std::string& text, uint64_t& value) {
  const char* end = text.data() + text.size();
  const auto [ptr, ec] = std::from_chars(text.data(), end, value);
  return !text.empty() && ec == std::errc() && ptr == end;
}

}  // namespace

std::vector<uint64_t> parse_seed_list(const std::string& list) {
  std::vector<uint64_t> seeds;
  std::set<uint64_t> seen;
  std::stringstream ss(list);
  for (std::string item; std::getline(ss, item, ',');) {
    const auto dash = item.find('-');
    uint64_t lo = 0, hi = 0;
    const bool ok = dash == std::string::npos
                        ? whole_seed(item, lo) && (hi = lo, true)
                        : whole_seed(item.substr(0, dash), lo) && whole_seed(item.substr(dash + 1), hi) && lo <= hi &&
                              hi - lo <= 100000;
    if (!ok) throw Error("--seeds: '" + item + "' is not a seed or a range like 0-4");
    for (uint64_t s = lo;; ++s) {
      if (!seen.insert(s).second) throw Error("--seeds: seed " + std::to_string(s) + " is given twice in '" + list + "'");
      seeds.push_back(s);
      if (s == hi) break;
    }
  }
  if (seeds.empty() || (!list.empty() && list.back() == ',')) throw Error("--seeds: give at least one seed, as 0,1,2 or 0-4");
  return seeds;
}

nlohmann::json aggregate_json(const AggregateWithIntervals& a) {
  const auto& p = a.point;
  auto pair = [](const Interval& i) { return nlohmann::json::array({i.lo, i.hi}); };
  return {{"median", p.median}, {"iqr", p.iqr}, {"iqm", p.iqm}, {"mean", p.mean}, {"std", p.std}, {"min", p.min},
          {"max", p.max},       {"count", p.count},
          {"ci95", {{"median", pair(a.median)}, {"iqr", pair(a.iqr)}, {"iqm", pair(a.iqm)}, {"mean", pair(a.mean)}}}};
}

namespace {

void check_episode_count(const EvalSettings& s) {
  const double total_episodes = static_cast<double>(s.seeds.size()) * s.episodes;
  if (s.episodes <= 0 || total_episodes > kMaxEvalEpisodes)
    throw Error("evaluation: " + std::to_string(s.seeds.size()) + " seeds x " + std::to_string(s.episodes) +
                " episodes is outside 1.." + std::to_string(static_cast<long>(kMaxEvalEpisodes)) + " episodes");
}

// A pairing's policy as the settings ask for it.
agents::InferencePolicy load_pairing(const Pairing& p, const EvalSettings& s, std::vector<std::string>* warnings) {
  agents::InferenceOptions io;
  io.device = s.device;
  // Without guidance the policy draws one sample: the candidates setting is for guided pairings.
  const bool guided = !p.guidance.empty() && p.guidance != "none";
  io.candidates = guided ? s.candidates : 0;
  io.select = s.select;
  io.temperature = s.temperature;
  io.chunk = s.chunk;
  return agents::InferencePolicy::load(p.diffusion, p.guidance, io, warnings);
}

// An evaluation's record: every episode, the per-seed means and the aggregates with their bootstrap intervals.
void summarize(Evaluation& r, const Pairing& p, const agents::InferencePolicy& policy, const envs::EnvSpec& env,
               const std::vector<EpisodeRecord>& episodes, const EvalSettings& s, double seconds,
               long pool_env_steps) {
  r.per_seed = per_seed_means(episodes, s.seeds);
  r.aggregate = aggregate_with_intervals({r.per_seed}, s.bootstrap_reps, s.bootstrap_seed);
  nlohmann::json eps = nlohmann::json::array(), seeds = nlohmann::json::array();
  long env_steps = 0;
  for (const auto& e : episodes) {
    eps.push_back({{"seed", e.seed}, {"episode", e.episode}, {"return", e.episode_return}, {"length", e.length},
                   {"normalized_score", e.normalized_score}, {"terminated", e.terminated}});
    env_steps += e.length;
  }
  for (size_t i = 0; i < s.seeds.size(); ++i)
    seeds.push_back({{"seed", s.seeds[i]}, {"mean_normalized_score", r.per_seed[i]}});
  r.json = {{"diffusion", p.diffusion},
            {"guidance", policy.guidance() ? p.guidance : "none"},
            {"env", env.id},
            {"candidates", policy.candidates()},
            {"select", policy.guidance() ? policy.select() : "none"},
            {"env_steps", env_steps},
            {"seconds", seconds},
            {"env_steps_per_s", pool_env_steps / std::max(seconds, 1e-9)},
            {"warnings", r.warnings},
            {"episodes", eps},
            {"per_seed", seeds},
            {"aggregate", aggregate_json(r.aggregate)}};
}

}  // namespace

std::vector<Evaluation> evaluate_pairings(const std::vector<Pairing>& pairings, const EvalSettings& s,
                                          const std::function<void(long, int, int)>& progress) {
  check_episode_count(s);
  std::vector<Evaluation> results(pairings.size());
  std::vector<agents::InferencePolicy> policies;
  std::map<std::string, std::vector<size_t>> by_env;  // pairings on each env, in order
  for (size_t i = 0; i < pairings.size(); ++i) {
    policies.push_back(load_pairing(pairings[i], s, &results[i].warnings));
    by_env[env_for_policy(policies.back(), s.env).id].push_back(i);
  }
  for (const auto& [env_id, indices] : by_env) {
    const auto& env = envs::find_env(env_id);
    std::vector<EvalJob> jobs;
    for (size_t i : indices) jobs.push_back({&policies[i], s.seeds, s.episodes});
    EvalPool pool;
    pool.max_envs = s.max_envs;
    pool.stacking = s.stacking;
    pool.progress = progress;
    const auto t0 = std::chrono::steady_clock::now();
    long env_steps = 0;
    const auto episodes = evaluate_many(jobs, env, pool, &env_steps);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    for (size_t k = 0; k < indices.size(); ++k)
      summarize(results[indices[k]], pairings[indices[k]], policies[indices[k]], env, episodes[k], s, seconds,
                env_steps);
  }
  return results;
}

Evaluation evaluate_pairing(const std::string& diffusion, const std::string& guidance, const EvalSettings& s,
                            const std::function<void(long, int, int)>& progress) {
  return std::move(evaluate_pairings({{diffusion, guidance}}, s, progress).front());
}

std::function<std::pair<double, double>(const std::string&, const std::string&)> training_curve_evaluator(
    const EvalSettings& base, int episodes) {
  if (episodes <= 0) throw Error("--eval-episodes must be positive");
  EvalSettings curve = base;
  curve.seeds.clear();
  for (int s = 0; s < episodes; ++s) curve.seeds.push_back(static_cast<uint64_t>(s));
  curve.episodes = 1;
  curve.bootstrap_reps = 1;  // the curve records means only
  auto mean_score = [curve](const std::string& diffusion, const std::string& guidance) {
    double sum = 0;
    for (double score : evaluate_pairing(diffusion, guidance, curve).per_seed) sum += score;
    return sum / curve.seeds.size();
  };
  return [mean_score](const std::string& diffusion, const std::string& guidance) {
    return std::make_pair(mean_score(diffusion, guidance), mean_score(diffusion, "none"));
  };
}

}  // namespace modiff::eval
