#include "modiff/envs/fidelity.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <tuple>

#include "modiff/common/error.h"

namespace modiff::envs {

std::vector<const ReferenceEpisode*> recording_order(const std::vector<ReferenceEpisode>& episodes) {
  auto key = [](const ReferenceEpisode& e) {
    const auto cut = e.name.rfind("_seed");
    const std::string kind = cut == std::string::npos ? e.name : e.name.substr(0, cut);
    const long seed = cut == std::string::npos ? 0 : std::strtol(e.name.c_str() + cut + 5, nullptr, 10);
    const int rank = kind == "zero" ? 0 : kind == "sine" ? 1 : 2;
    return std::make_tuple(rank, kind, seed, e.name);
  };
  std::vector<const ReferenceEpisode*> order;
  for (const auto& e : episodes) order.push_back(&e);
  std::stable_sort(order.begin(), order.end(), [&](auto* a, auto* b) { return key(*a) < key(*b); });
  return order;
}

EpisodeFidelity replay_reference(LocomotionEnv& env, const ReferenceEpisode& ep) {
  const EnvSpec& spec = env.spec();
  auto fail = [&](const std::string& why) { throw Error("episode '" + ep.name + "': " + why); };
  if (ep.joint_names != env.joint_names()) {
    std::string mine;
    for (const auto& n : env.joint_names()) mine += (mine.empty() ? "" : ",") + n;
    fail("joint names do not match " + spec.id + " (" + mine + ")");
  }
  const size_t steps = ep.actions.size();
  if (ep.observations.size() != steps + 1) fail("observations must have one row more than actions");
  if (ep.rewards.size() != steps || ep.dones.size() != steps) fail("rewards/dones must have one row per action");
  for (const auto& a : ep.actions)
    if (static_cast<int>(a.size()) != spec.act_dim) fail("action width differs from the env's " + std::to_string(spec.act_dim));
  for (const auto& o : ep.observations)
    if (static_cast<int>(o.size()) != spec.obs_dim) fail("observation width differs from the env's " + std::to_string(spec.obs_dim));

  EpisodeFidelity out;
  out.name = ep.name;
  out.steps_reference = static_cast<int>(steps);
  for (size_t t = 0; t < steps; ++t)
    if (ep.dones[t]) {
      out.steps_reference = static_cast<int>(t + 1);
      break;
    }

  std::vector<float> obs(spec.obs_dim);
  auto obs_error = [&](size_t row) {
    double e = 0;
    for (int k = 0; k < spec.obs_dim; ++k) e = std::max(e, std::abs(double(obs[k]) - double(ep.observations[row][k])));
    return e;
  };
  env.reset_to(ep.initial, obs.data());
  out.obs_max_abs_error.push_back(obs_error(0));
  out.steps_replayed = static_cast<int>(steps);
  for (size_t t = 0; t < steps; ++t) {
    StepResult r = env.step(ep.actions[t].data(), obs.data());
    out.obs_max_abs_error.push_back(obs_error(t + 1));
    out.reward_abs_error.push_back(std::abs(r.reward - ep.rewards[t]));
    if (r.terminated) {
      out.steps_replayed = static_cast<int>(t + 1);
      break;
    }
  }
  return out;
}

}  // namespace modiff::envs
