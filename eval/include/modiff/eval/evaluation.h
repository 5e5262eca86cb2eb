#pragma once
// One evaluation of a pairing (diffusion policy + guidance module or none) as
// `modiff eval` reports it: every episode, per-seed means, aggregates with
// bootstrap intervals, as JSON. Shared by `modiff eval`, `modiff swap` and sweeps.
#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "modiff/agents/inference_policy.h"
#include "modiff/eval/statistics.h"

namespace modiff::eval {

// The most episodes one evaluation runs (seeds x episodes per seed): each is a Bullet world while it runs.
inline constexpr double kMaxEvalEpisodes = 10000000;

struct EvalSettings {
  std::vector<uint64_t> seeds{0, 1, 2, 3, 4};
  int episodes = 10;
  std::string env;          // empty: the policy's
  int candidates = 0;       // 0: the policy's default; ignored without guidance (one sample)
  std::string select;       // empty: the policy's default
  double temperature = 1.0;
  std::string device = "auto";
  int max_envs = 0;
  int chunk = -1;
  agents::PassStacking stacking = agents::PassStacking::Auto;  // agents::SharedPasses
  int bootstrap_reps = 50000;
  uint64_t bootstrap_seed = 0;
};

struct Evaluation {
  nlohmann::json json;  // diffusion, guidance, env, ..., episodes, per_seed, aggregate
  AggregateWithIntervals aggregate;
  std::vector<double> per_seed;
  std::vector<std::string> warnings;
};

Evaluation evaluate_pairing(const std::string& diffusion_dir, const std::string& guidance_dir,
                            const EvalSettings& settings, const std::function<void(long, int, int)>& progress = {});

// Several pairings under one set of settings, those on the same env in one episode pool (evaluate_many: shared
// physics, each policy's passes its own): each the evaluation evaluate_pairing gives it alone, but for the
// timing, which is the shared pool's ("seconds", and "env_steps_per_s" of all its episodes).
struct Pairing {
  std::string diffusion, guidance;  // guidance: a directory or "none"
};
std::vector<Evaluation> evaluate_pairings(const std::vector<Pairing>& pairings, const EvalSettings& settings,
                                          const std::function<void(long, int, int)>& progress = {});

// Evaluation during training (agents::TrainOptions::evaluate), for `modiff train --eval-every` and sweeps: the
// policy with its guidance and without, one episode on each of the seeds 0..episodes-1 under `base`'s other
// settings, each scored as the mean over those seeds.
std::function<std::pair<double, double>(const std::string&, const std::string&)> training_curve_evaluator(
    const EvalSettings& base, int episodes);

// "0,1,2", "0-4" or a mix ("0-2,10").
std::vector<uint64_t> parse_seed_list(const std::string& list);

nlohmann::json aggregate_json(const AggregateWithIntervals& a);

}  // namespace modiff::eval
