// The vector env: auto-reset, seeding, equality with envs stepped one at a
// time, independence from the thread count.
#include <tbb/global_control.h>

#include <catch2/catch.hpp>
#include <cmath>

#include "modiff/common/rng.h"
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
