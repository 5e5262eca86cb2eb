#include "modiff/datasets/generate.h"

#include <tbb/parallel_for.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <memory>

#include "modiff/common/available_memory.h"
#include "modiff/common/error.h"
#include "modiff/common/rng.h"
#include "modiff/envs/locomotion_env.h"

namespace modiff::datasets {
namespace {

// One episode's rows, in the dataset's layout.
struct Episode {
  std::vector<float> obs, next, act, rew;
  std::vector<uint8_t> term, tout;
  size_t rows() const { return rew.size(); }
  void clear() { obs.clear(), next.clear(), act.clear(), rew.clear(), term.clear(), tout.clear(); }
};

// The dataset under construction: episodes are appended in index order, and the one that reaches the wanted
// size is cut there.
struct Assembly {
  Dataset& d;
  size_t want;
  long next_index = 0;                 // the episode to append next
  std::map<long, Episode> finished;    // finished episodes waiting for an earlier one
  std::vector<Episode> spare;          // appended episodes' buffers, kept for the next ones (no page faults)

  bool full() const { return d.size() >= want; }

  void recycle(Episode&& e) {
    e.clear();
    spare.push_back(std::move(e));
  }
  Episode fresh() {
    if (spare.empty()) return Episode{};
    Episode e = std::move(spare.back());
    spare.pop_back();
    return e;
  }

  void append(const Episode& e) {
    const size_t rows = std::min(e.rows(), want - d.size());
    const int obs_dim = d.obs_dim, act_dim = d.act_dim;
    d.observations.insert(d.observations.end(), e.obs.begin(), e.obs.begin() + rows * obs_dim);
    d.next_observations.insert(d.next_observations.end(), e.next.begin(), e.next.begin() + rows * obs_dim);
    d.actions.insert(d.actions.end(), e.act.begin(), e.act.begin() + rows * act_dim);
    d.rewards.insert(d.rewards.end(), e.rew.begin(), e.rew.begin() + rows);
    d.terminals.insert(d.terminals.end(), e.term.begin(), e.term.begin() + rows);
    d.timeouts.insert(d.timeouts.end(), e.tout.begin(), e.tout.begin() + rows);
    // An episode cut short by the dataset's size ends in a truncation: a
    // timeout, so that D4RL's logic bootstraps there and datasets concatenate.
    if (rows < e.rows()) d.timeouts.back() = 1;
    ++next_index;
  }

  void finish(long index, Episode&& e) {
    finished.emplace(index, std::move(e));
    for (auto it = finished.find(next_index); it != finished.end() && !full(); it = finished.find(next_index)) {
      append(it->second);
      recycle(std::move(it->second));
      finished.erase(it);
    }
  }

  // The first episode that cannot appear in the dataset: the one before which the rows of earlier episodes
  // (finished, or still running with `running_rows[k - next_index]` rows so far, which only grow) already reach
  // the wanted size. Episodes from it on need not run. Episodes [next_index, started) are finished or running.
  long first_unneeded(std::vector<size_t> running_rows, long started) const {
    for (const auto& [k, e] : finished) running_rows[static_cast<size_t>(k - next_index)] = e.rows();
    size_t before = d.size();
    for (long k = next_index; k < started; ++k) {
      if (before >= want) return k;
      before += running_rows[static_cast<size_t>(k - next_index)];
    }
    return before >= want ? started : std::numeric_limits<long>::max();
  }
};

}  // namespace

uint64_t episode_reset_seed(uint64_t seed, long episode) {
  return derive_seed(derive_seed(seed, 0xDA7A5E7), static_cast<uint64_t>(episode));
}

uint64_t episode_step_key(uint64_t seed, long episode, long step) {
  return derive_seed(derive_seed(derive_seed(seed, 0xAC7105), static_cast<uint64_t>(episode)),
                     static_cast<uint64_t>(step));
}

Dataset generate_dataset(const envs::EnvSpec& spec, const BatchPolicy& policy, const GenerateOptions& opt) {
  if (opt.transitions <= 0) throw Error("--transitions must be positive");
  if (opt.num_envs <= 0) throw Error("number of envs must be positive");
  const int obs_dim = spec.obs_dim, act_dim = spec.act_dim;
  // Observations, next observations, actions and rewards as floats, two flags per row; twice that for the
  // file's write buffers.
  const double row_bytes = (2.0 * obs_dim + act_dim + 1) * sizeof(float) + 2;
  check_fits_in_memory(std::to_string(opt.transitions) + " transitions of " + spec.id, 2 * row_bytes * opt.transitions);
  Dataset d;
  d.obs_dim = obs_dim;
  d.act_dim = act_dim;
  d.attributes.env_id = spec.id;
  d.attributes.seed = static_cast<long long>(opt.seed);
  Assembly assembly{d, static_cast<size_t>(opt.transitions), 0, {}, {}};
  d.observations.reserve(assembly.want * obs_dim);
  d.next_observations.reserve(assembly.want * obs_dim);
  d.actions.reserve(assembly.want * act_dim);

  // A slot runs one episode at a time; `index` < 0 marks an idle slot.
  struct Slot {
    long index = -1;
    std::unique_ptr<envs::LocomotionEnv> env;
    std::vector<float> obs;
    Episode episode;
  };
  std::vector<Slot> slots(static_cast<size_t>(opt.num_envs));
  long next_episode = 0;
  std::vector<float> batch_obs;
  std::vector<uint64_t> keys;
  std::vector<double> actions;
  std::vector<int> live;
  while (!assembly.full()) {
    std::vector<size_t> running_rows(static_cast<size_t>(next_episode - assembly.next_index), 0);
    for (const Slot& s : slots)
      if (s.index >= 0) running_rows[static_cast<size_t>(s.index - assembly.next_index)] = s.episode.rows();
    const long cutoff = assembly.first_unneeded(std::move(running_rows), next_episode);
    // Drop running episodes that can no longer appear (the ones before them already fill the dataset), and
    // give idle slots the next episodes that still can.
    live.clear();
    for (size_t i = 0; i < slots.size(); ++i) {
      Slot& s = slots[i];
      if (s.index >= cutoff) {
        s.index = -1;
        assembly.recycle(std::move(s.episode));
      }
      if (s.index < 0 && next_episode < cutoff) {
        s.index = next_episode++;
        s.episode = assembly.fresh();
        s.obs.resize(obs_dim);
        if (!s.env) {
          // PyBullet's env counts the floor among the body parts from its second reset on (docs/fidelity.md),
          // so an env's first episode differs from its later ones. D4RL collected on one long-lived env: every
          // episode here runs on an env past its first reset, whichever slot runs it.
          s.env = std::make_unique<envs::LocomotionEnv>(spec);
          s.env->reset(0, s.obs.data());
        }
        s.env->reset(episode_reset_seed(opt.seed, s.index), s.obs.data());
      }
      if (s.index >= 0) live.push_back(static_cast<int>(i));
    }
    if (live.empty()) break;  // cannot happen while the dataset is short; kept as a guard against a loop
    const int m = static_cast<int>(live.size());
    batch_obs.resize(static_cast<size_t>(m) * obs_dim);
    keys.resize(m);
    actions.resize(static_cast<size_t>(m) * act_dim);
    for (int j = 0; j < m; ++j) {
      const Slot& s = slots[live[j]];
      std::copy(s.obs.begin(), s.obs.end(), batch_obs.begin() + static_cast<size_t>(j) * obs_dim);
      keys[j] = episode_step_key(opt.seed, s.index, static_cast<long>(s.episode.rows()));
    }
    policy(batch_obs.data(), m, keys.data(), actions.data());
    for (double a : actions)
      if (!std::isfinite(a)) throw Error("the behavior policy produced a non-finite action");
    std::vector<uint8_t> ended(m, 0);
    tbb::parallel_for(0, m, [&](int j) {
      Slot& s = slots[live[j]];
      Episode& e = s.episode;
      const double* a = actions.data() + static_cast<size_t>(j) * act_dim;
      e.obs.insert(e.obs.end(), s.obs.begin(), s.obs.end());
      const auto r = s.env->step(a, s.obs.data());
      e.next.insert(e.next.end(), s.obs.begin(), s.obs.end());
      for (int k = 0; k < act_dim; ++k) e.act.push_back(static_cast<float>(a[k]));
      e.rew.push_back(static_cast<float>(r.reward));
      e.term.push_back(r.terminated);
      e.tout.push_back(r.truncated);
      ended[j] = r.terminated || r.truncated;
    });
    for (int j = 0; j < m; ++j) {
      Slot& s = slots[live[j]];
      // An episode that already reaches the wanted size is complete enough: the rows past the cut never count.
      const bool reaches_cut = s.index == assembly.next_index && d.size() + s.episode.rows() >= assembly.want;
      if (ended[j] || reaches_cut) {
        if (!ended[j]) s.episode.tout.back() = 1;  // cut by the dataset's size: a truncation
        assembly.finish(s.index, std::move(s.episode));
        s.index = -1;
      }
    }
  }
  return d;
}

}  // namespace modiff::datasets
