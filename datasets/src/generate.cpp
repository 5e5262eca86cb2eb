#include "modiff/datasets/generate.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <memory>

#include "modiff/common/available_memory.h"
#include "modiff/common/error.h"
#include "modiff/common/rng.h"
#include "modiff/envs/episode_pool.h"

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

  // Each pool slot's episode so far, in the dataset's layout.
  std::vector<Episode> running;
  std::vector<long> running_index;
  long started = 0;  // episodes [0, started) were given to a slot
  envs::EpisodePoolOptions pool;
  pool.episodes = std::numeric_limits<long>::max() / 2;  // as many as the size takes (first_unneeded stops them)
  pool.max_envs = opt.num_envs;
  pool.reused_envs = true;
  pool.reset_seed = [&](long episode) { return episode_reset_seed(opt.seed, episode); };
  running.resize(static_cast<size_t>(opt.num_envs));
  running_index.assign(static_cast<size_t>(opt.num_envs), -1);
  std::vector<uint64_t> keys;
  envs::EpisodeHooks hooks;
  hooks.policy = [&](const float* obs, int rows, const long* episodes, const int* steps, double* actions) {
    keys.resize(static_cast<size_t>(rows));
    for (int j = 0; j < rows; ++j) keys[j] = episode_step_key(opt.seed, episodes[j], steps[j]);
    policy(obs, rows, keys.data(), actions);
    for (long k = 0; k < static_cast<long>(rows) * act_dim; ++k)
      if (!std::isfinite(actions[k])) throw Error("the behavior policy produced a non-finite action");
  };
  hooks.on_start = [&](int slot, long episode) {
    running[slot] = assembly.fresh();
    running_index[slot] = episode;
    started = std::max(started, episode + 1);
  };
  hooks.on_drop = [&](int slot, long) {
    assembly.recycle(std::move(running[slot]));
    running_index[slot] = -1;
  };
  // Episodes that can no longer appear (the ones before them already fill the dataset) need not run.
  hooks.first_unneeded = [&]() -> long {
    if (assembly.full()) return assembly.next_index;
    std::vector<size_t> rows(static_cast<size_t>(started - assembly.next_index), 0);
    for (size_t i = 0; i < running.size(); ++i)
      if (running_index[i] >= 0) rows[static_cast<size_t>(running_index[i] - assembly.next_index)] = running[i].rows();
    return assembly.first_unneeded(std::move(rows), started);
  };
  hooks.on_step = [&](const envs::EpisodeStep& t) {
    Episode& e = running[t.slot];
    e.obs.insert(e.obs.end(), t.obs, t.obs + obs_dim);
    e.next.insert(e.next.end(), t.next_obs, t.next_obs + obs_dim);
    for (int k = 0; k < act_dim; ++k) e.act.push_back(static_cast<float>(t.action[k]));
    e.rew.push_back(static_cast<float>(t.result.reward));
    e.term.push_back(t.result.terminated);
    e.tout.push_back(t.result.truncated);
  };
  hooks.after_step = [&](int slot, long episode, const envs::EpisodeOutcome&, bool ended) {
    Episode& e = running[slot];
    // An episode that already reaches the wanted size is complete enough: the rows past the cut never count.
    const bool reaches_cut = episode == assembly.next_index && d.size() + e.rows() >= assembly.want;
    if (!ended && !reaches_cut) return true;
    if (!ended) e.tout.back() = 1;  // cut by the dataset's size: a truncation
    assembly.finish(episode, std::move(e));
    running_index[slot] = -1;
    return false;
  };
  envs::run_episodes(spec, pool, hooks);
  return d;
}

}  // namespace modiff::datasets
