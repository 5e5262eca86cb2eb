#include "modiff/bench/synthetic_data.h"

#include "modiff/common/rng.h"

namespace modiff::bench {

datasets::Dataset synthetic_dataset(const envs::EnvSpec& env, long rows, uint64_t seed) {
  datasets::Dataset d;
  d.obs_dim = env.obs_dim;
  d.act_dim = env.act_dim;
  d.attributes.env_id = env.id;
  Rng rng(seed);
  for (long i = 0; i < rows; ++i) {
    for (int k = 0; k < d.obs_dim; ++k) d.observations.push_back(static_cast<float>(rng.uniform(-1, 1)));
    for (int k = 0; k < d.act_dim; ++k) d.actions.push_back(static_cast<float>(rng.uniform(-1, 1)));
    d.rewards.push_back(static_cast<float>(rng.uniform(0, 3)));
    d.terminals.push_back(0);
    d.timeouts.push_back((i + 1) % 1000 == 0);
  }
  return d;
}

}  // namespace modiff::bench
