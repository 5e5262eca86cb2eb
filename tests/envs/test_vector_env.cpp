// The vector env: auto-reset, seeding, equality with envs stepped one at a
// time, independence from the thread count.
#include <tbb/global_control.h>

#include <catch2/catch.hpp>
#include <cmath>

#include "modiff/common/rng.h"
#include "modiff/envs/episode_pool.h"
#include "modiff/envs/rollout.h"
#include "modiff/envs/vector_env.h"

using namespace modiff::envs;

namespace {

struct Run {
  std::vector<float> obs;
  std::vector<double> rewards;
  std::vector<uint8_t> dones;
};

Run run_vector(const EnvSpec& spec, int n, int steps, size_t threads) {
  tbb::global_control limit(tbb::global_control::max_allowed_parallelism, threads);
  VectorEnv venv(spec, n, 100);
  venv.reset();
  Run r;
  r.obs = venv.observations();
  modiff::Rng rng(3);
  std::vector<double> a(static_cast<size_t>(n) * spec.act_dim);
  for (int t = 0; t < steps; ++t) {
    for (auto& v : a) v = rng.uniform(-1, 1);
    venv.step(a.data());
    r.obs.insert(r.obs.end(), venv.observations().begin(), venv.observations().end());
    r.rewards.insert(r.rewards.end(), venv.rewards().begin(), venv.rewards().end());
    for (int i = 0; i < n; ++i) r.dones.push_back(venv.terminated()[i] | (venv.truncated()[i] << 1));
  }
  return r;
}

}  // namespace

TEST_CASE("vector env: results do not depend on the thread count", "[vector]") {
  const auto& spec = find_env("bullet-hopper-v0");
  Run one = run_vector(spec, 6, 60, 1);
  Run two = run_vector(spec, 6, 60, 2);
  Run many = run_vector(spec, 6, 60, 8);
  CHECK(one.obs == two.obs);
  CHECK(one.obs == many.obs);
  CHECK(one.rewards == two.rewards);
  CHECK(one.dones == many.dones);
}

TEST_CASE("vector env: env i equals a single env seeded with seed + i, auto-reset included", "[vector]") {
  const auto& spec = find_env("bullet-walker2d-v0");
  const int n = 3, steps = 80;
  VectorEnv venv(spec, n, 40);
  venv.reset();
  std::vector<LocomotionEnv> singles;
  std::vector<std::vector<float>> obs(n, std::vector<float>(spec.obs_dim));
  for (int i = 0; i < n; ++i) {
    singles.emplace_back(spec);
    singles[i].reset(40 + i, obs[i].data());
    CHECK(std::equal(obs[i].begin(), obs[i].end(), venv.observations().begin() + i * spec.obs_dim));
  }
  std::vector<double> a(n * spec.act_dim);
  int resets = 0;
  for (int t = 0; t < steps; ++t) {
    for (size_t k = 0; k < a.size(); ++k) a[k] = std::sin(0.2 * t + k);
    venv.step(a.data());
    for (int i = 0; i < n; ++i) {
      StepResult r = singles[i].step(&a[i * spec.act_dim], obs[i].data());
      CHECK(r.reward == venv.rewards()[i]);
      CHECK(r.terminated == static_cast<bool>(venv.terminated()[i]));
      if (r.terminated || r.truncated) {
        CHECK(std::equal(obs[i].begin(), obs[i].end(), venv.final_observations().begin() + i * spec.obs_dim));
        singles[i].reset(std::nullopt, obs[i].data());
        ++resets;
      }
      CHECK(std::equal(obs[i].begin(), obs[i].end(), venv.observations().begin() + i * spec.obs_dim));
    }
  }
  CHECK(resets > 0);  // walker episodes under these actions end well within 80 steps
}

TEST_CASE("vector env: bad sizes are rejected", "[vector]") {
  CHECK_THROWS_WITH(VectorEnv(find_env("bullet-ant-v0"), 0, 0), Catch::Contains("must be positive"));
}

// D4RL's REF_MIN is the mean return of uniform random actions over 100 episodes
// in PyBullet; PyBullet's mean lengths were measured at 11.8 / 13.9 / 1000 /
// 781.2. The issue asks for 5% on the return and 10% on the length.
void check_random_reference(const char* env, double ref_length) {
  const auto& spec = find_env(env);
  RolloutOptions opt;
  opt.episodes = 100;
  opt.seed = 0;
  auto out = run_rollouts(spec, opt);
  double ret = 0, len = 0;
  for (const auto& o : out) {
    ret += o.episode_return / out.size();
    len += double(o.length) / out.size();
  }
  INFO(env << ": mean return " << ret << " vs " << spec.ref_min_return << ", mean length " << len << " vs " << ref_length);
  CHECK(std::abs(ret - spec.ref_min_return) <= 0.05 * std::abs(spec.ref_min_return));
  CHECK(std::abs(len - ref_length) <= 0.10 * ref_length);
}

TEST_CASE("random policy matches D4RL's reference: hopper", "[rollout][reference]") {
  check_random_reference("bullet-hopper-v0", 11.8);
}
TEST_CASE("random policy matches D4RL's reference: walker2d", "[rollout][reference]") {
  check_random_reference("bullet-walker2d-v0", 13.9);
}
TEST_CASE("random policy matches D4RL's reference: halfcheetah", "[rollout][reference]") {
  check_random_reference("bullet-halfcheetah-v0", 1000.0);
}
TEST_CASE("random policy matches D4RL's reference: ant", "[rollout][reference]") {
  check_random_reference("bullet-ant-v0", 781.2);
}

TEST_CASE("rollouts: the same seed gives the same episodes whatever the thread count", "[vector][rollout]") {
  const auto& spec = find_env("bullet-hopper-v0");
  RolloutOptions opt;
  opt.episodes = 20;
  opt.seed = 9;
  opt.max_envs = 7;
  std::vector<EpisodeOutcome> a, b;
  {
    tbb::global_control one(tbb::global_control::max_allowed_parallelism, 1);
    a = run_rollouts(spec, opt);
  }
  b = run_rollouts(spec, opt);
  REQUIRE(a.size() == b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    CHECK(a[i].episode_return == b[i].episode_return);
    CHECK(a[i].length == b[i].length);
  }
}

TEST_CASE("rollouts: an episode depends on its seed alone, not on the number of envs beside it", "[vector][rollout]") {
  const auto& spec = find_env("bullet-hopper-v0");
  RolloutOptions opt;
  opt.episodes = 12;
  opt.seed = 4;
  std::vector<std::vector<EpisodeOutcome>> runs;
  for (int envs : {1, 5, 64}) {
    opt.max_envs = envs;
    runs.push_back(run_rollouts(spec, opt));
  }
  for (const auto& run : runs) {
    REQUIRE(run.size() == runs[0].size());
    for (size_t i = 0; i < run.size(); ++i) {
      CHECK(run[i].episode_return == runs[0][i].episode_return);
      CHECK(run[i].length == runs[0][i].length);
    }
  }
  CHECK(runs[0][0].episode_return != runs[0][1].episode_return);  // episodes of their own
}

TEST_CASE("episode pool: a caller stops an episode, and episodes no longer needed neither start nor go on",
          "[vector][rollout]") {
  const auto& spec = find_env("bullet-halfcheetah-v0");  // no early terminations: episodes run 1000 steps
  EpisodePoolOptions pool;
  pool.episodes = 10;
  pool.max_envs = 3;
  pool.reset_seed = [](long k) { return static_cast<uint64_t>(k); };
  std::vector<long> started, dropped;
  std::vector<EpisodeOutcome> ended(10);
  std::vector<int> transitions(10, 0);
  EpisodeHooks hooks;
  hooks.policy = [&](const float*, int, const long*, const int*, double*) {};
  hooks.on_start = [&](int, long k) { started.push_back(k); };
  hooks.on_drop = [&](int, long k) { dropped.push_back(k); };
  hooks.on_step = [&](const EpisodeStep& t) { __atomic_add_fetch(&transitions[t.episode], 1, __ATOMIC_RELAXED); };
  long finished_episodes = 0;
  hooks.after_step = [&](int, long k, const EpisodeOutcome& so_far, bool env_ended) {
    CHECK_FALSE(env_ended);
    if (so_far.length < 5 + static_cast<int>(k)) return true;
    ended[k] = so_far;
    ++finished_episodes;
    return false;  // episode k stops after 5 + k steps
  };
  hooks.first_unneeded = [&] { return finished_episodes >= 2 ? 3L : 10L; };  // after two, only 0-2 are wanted
  const long steps = run_episodes(spec, pool, hooks);
  // 0, 1, 2 start; 0 stops after 5 steps and its slot takes 3; 1 stops after 6, and 3 (one step in) is dropped.
  CHECK(started == std::vector<long>{0, 1, 2, 3});
  CHECK(dropped == std::vector<long>{3});
  for (long k = 0; k < 3; ++k) {
    CHECK(ended[k].length == 5 + k);
    CHECK(transitions[k] == 5 + k);
    CHECK_FALSE(ended[k].terminated);
  }
  CHECK(transitions[3] == 1);
  CHECK(steps == 5 + 6 + 7 + 1);
}
