#include "modiff/datasets/generate.h"

#include <algorithm>
#include <cmath>

#include "modiff/common/error.h"
#include "modiff/envs/vector_env.h"

namespace modiff::datasets {

Dataset generate_dataset(const envs::EnvSpec& spec, const BatchPolicy& policy, const GenerateOptions& opt) {
  if (opt.transitions <= 0) throw Error("--transitions must be positive");
  if (opt.num_envs <= 0) throw Error("number of envs must be positive");
  const int n = opt.num_envs, obs_dim = spec.obs_dim, act_dim = spec.act_dim;
  envs::VectorEnv venv(spec, n, opt.seed);
  venv.reset();

  Dataset d;
  d.obs_dim = obs_dim;
  d.act_dim = act_dim;
  d.attributes.env_id = spec.id;
  d.attributes.seed = static_cast<long long>(opt.seed);
  const size_t want = static_cast<size_t>(opt.transitions);
  d.observations.reserve(want * obs_dim);
  d.next_observations.reserve(want * obs_dim);
  d.actions.reserve(want * act_dim);

  // Each env's episode in progress, moved into the dataset when it ends.
  struct Episode {
    std::vector<float> obs, next, act, rew;
    std::vector<uint8_t> term, tout;
    void clear() { obs.clear(), next.clear(), act.clear(), rew.clear(), term.clear(), tout.clear(); }
  };
  std::vector<Episode> running(n);
  std::vector<double> actions(static_cast<size_t>(n) * act_dim);
  auto append = [&](const Episode& e, size_t rows) {
    d.observations.insert(d.observations.end(), e.obs.begin(), e.obs.begin() + rows * obs_dim);
    d.next_observations.insert(d.next_observations.end(), e.next.begin(), e.next.begin() + rows * obs_dim);
    d.actions.insert(d.actions.end(), e.act.begin(), e.act.begin() + rows * act_dim);
    d.rewards.insert(d.rewards.end(), e.rew.begin(), e.rew.begin() + rows);
    d.terminals.insert(d.terminals.end(), e.term.begin(), e.term.begin() + rows);
    d.timeouts.insert(d.timeouts.end(), e.tout.begin(), e.tout.begin() + rows);
  };
  while (d.size() < want) {
    const std::vector<float> obs = venv.observations();
    policy(obs.data(), n, actions.data());
    for (double& a : actions)
      if (!std::isfinite(a)) throw Error("the behavior policy produced a non-finite action");
    venv.step(actions.data());
    for (int i = 0; i < n && d.size() < want; ++i) {
      Episode& e = running[i];
      const bool ended = venv.terminated()[i] || venv.truncated()[i];
      const float* next = ended ? &venv.final_observations()[static_cast<size_t>(i) * obs_dim]
                                : &venv.observations()[static_cast<size_t>(i) * obs_dim];
      e.obs.insert(e.obs.end(), obs.begin() + i * obs_dim, obs.begin() + (i + 1) * obs_dim);
      e.next.insert(e.next.end(), next, next + obs_dim);
      for (int k = 0; k < act_dim; ++k) e.act.push_back(static_cast<float>(actions[i * act_dim + k]));
      e.rew.push_back(static_cast<float>(venv.rewards()[i]));
      e.term.push_back(venv.terminated()[i]);
      e.tout.push_back(venv.truncated()[i]);
      if (ended) {
        const size_t rows = std::min(e.rew.size(), want - d.size());
        append(e, rows);
        // An episode cut short by the dataset's size ends in a truncation: a
        // timeout, so that D4RL's logic bootstraps there and datasets concatenate.
        if (rows < e.rew.size()) d.timeouts.back() = 1;
        e.clear();
      }
    }
  }
  return d;
}

}  // namespace modiff::datasets
