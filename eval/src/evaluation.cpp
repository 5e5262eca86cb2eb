#include "modiff/eval/evaluation.h"

#include <charconv>
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

Evaluation evaluate_pairing(const std::string& diffusion, const std::string& guidance, const EvalSettings& s,
                            const std::function<void(long, int, int)>& progress) {
  const double total_episodes = static_cast<double>(s.seeds.size()) * s.episodes;
  if (s.episodes <= 0 || total_episodes > kMaxEvalEpisodes)
    throw Error("evaluation: " + std::to_string(s.seeds.size()) + " seeds x " + std::to_string(s.episodes) +
                " episodes is outside 1.." + std::to_string(static_cast<long>(kMaxEvalEpisodes)) + " episodes");
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
