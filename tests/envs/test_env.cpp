// The locomotion env: registry, seeding, state injection, rewards, bad input.
#include <catch2/catch.hpp>
#include <cmath>

#include "modiff/common/error.h"
#include "modiff/envs/locomotion_env.h"

using namespace modiff::envs;

namespace {

struct Trace {
  std::vector<float> obs;
  std::vector<double> rewards;
  int length = 0;
  bool terminated = false;
};

// Runs one episode with smooth deterministic actions from the env's current state.
Trace run(LocomotionEnv& env, const std::vector<float>& first_obs, int max_steps) {
  Trace t;
  t.obs = first_obs;
  std::vector<double> a(env.spec().act_dim);
  std::vector<float> obs(env.spec().obs_dim);
  for (int s = 0; s < max_steps; ++s) {
    for (size_t k = 0; k < a.size(); ++k) a[k] = std::sin(0.3 * s + k);
    StepResult r = env.step(a.data(), obs.data());
    t.obs.insert(t.obs.end(), obs.begin(), obs.end());
    t.rewards.push_back(r.reward);
    t.length = s + 1;
    if (r.terminated || r.truncated) {
      t.terminated = r.terminated;
      break;
    }
  }
  return t;
}

}  // namespace

TEST_CASE("env names and PyBullet aliases resolve to the same spec", "[env]") {
  CHECK(&find_env("bullet-hopper-v0") == &find_env("HopperBulletEnv-v0"));
  CHECK(find_env("Walker2DBulletEnv-v0").act_dim == 6);
  CHECK(find_env("bullet-halfcheetah-v0").obs_dim == 26);
  CHECK(find_env("AntBulletEnv-v0").obs_dim == 28);
  CHECK_THROWS_WITH(find_env("bullet-humanoid-v0"), Catch::Contains("unknown env 'bullet-humanoid-v0'"));
}

TEST_CASE("normalized score uses D4RL's bullet references", "[env]") {
  // REF_MIN_SCORE / REF_MAX_SCORE of d4rl/infos.py (Farama-Foundation/D4RL), copied here by hand: any other
  // constants in the code fail this test.
  const struct {
    const char* env;
    double ref_min, ref_max;
  } d4rl[] = {{"bullet-hopper-v0", 20.058972, 1441.8059623430963},
              {"bullet-halfcheetah-v0", -1275.766996, 2381.6725},
              {"bullet-walker2d-v0", 16.523877, 1623.6476303317536},
              {"bullet-ant-v0", 373.705955, 2650.495}};
  for (const auto& r : d4rl) {
    INFO(r.env);
    const auto& spec = find_env(r.env);
    CHECK(spec.ref_min_return == r.ref_min);
    CHECK(spec.ref_max_return == r.ref_max);
    CHECK(normalized_score(spec, r.ref_min) == Approx(0.0).margin(1e-12));
    CHECK(normalized_score(spec, r.ref_max) == Approx(100.0));
    const double midway = (r.ref_min + r.ref_max) / 2;
    CHECK(normalized_score(spec, midway) == Approx(50.0));
    CHECK(normalized_score(spec, 1000.0) == Approx(100.0 * (1000.0 - r.ref_min) / (r.ref_max - r.ref_min)));
  }
}

TEST_CASE("every env builds, resets and has its observation layout", "[env]") {
  for (const auto& spec : all_envs()) {
    LocomotionEnv env(spec);
    auto obs = env.reset_checked(3);
    REQUIRE(static_cast<int>(obs.size()) == spec.obs_dim);
    CHECK(obs[0] == 0.0f);                      // z - initial_z at reset
    CHECK(obs[2] == Approx(1.0).margin(1e-6));  // cos(angle to target): facing the target
    for (int k = 0; k < spec.act_dim; ++k) CHECK(std::abs(obs[8 + 2 * k + 1]) == 0.0f);  // joints at rest
    for (float v : obs) CHECK(std::abs(v) <= 5.0f);
    CHECK(static_cast<int>(env.joint_names().size()) == spec.act_dim);
  }
}

TEST_CASE("the same seed gives a bitwise-identical episode, on a fresh or a used env", "[env][determinism]") {
  for (const auto& spec : all_envs()) {
    INFO(spec.id);
    LocomotionEnv a(spec), b(spec);
    Trace ta = run(a, a.reset_checked(11), 150);
    // b first plays another episode, then restarts from the same seed.
    run(b, b.reset_checked(5), 60);
    Trace tb = run(b, b.reset_checked(11), 150);
    CHECK(ta.length == tb.length);
    CHECK(ta.terminated == tb.terminated);
    // On a fresh env the first observation's target angle and the first step's
    // progress differ slightly (pybullet_envs counts the floor among the body
    // parts only after the first reset); everything after that is identical.
    const size_t row = a.spec().obs_dim;
    REQUIRE(ta.obs.size() == tb.obs.size());
    CHECK(std::vector<float>(ta.obs.begin() + row, ta.obs.end()) == std::vector<float>(tb.obs.begin() + row, tb.obs.end()));
    CHECK(ta.obs[0] == tb.obs[0]);
    CHECK(ta.obs[8] == tb.obs[8]);
    REQUIRE(ta.rewards.size() == tb.rewards.size());
    for (size_t i = 1; i < ta.rewards.size(); ++i) CHECK(ta.rewards[i] == tb.rewards[i]);
  }
}

TEST_CASE("different seeds give different starts", "[env]") {
  LocomotionEnv env(find_env("bullet-walker2d-v0"));
  auto o1 = env.reset_checked(1);
  auto o2 = env.reset_checked(2);
  CHECK(o1 != o2);
}

TEST_CASE("state injection puts the actuated joints where asked", "[env]") {
  LocomotionEnv env(find_env("bullet-hopper-v0"));
  std::vector<float> obs(15);
  env.reset_to({{-0.5, -0.2, 0.1}, {0.0, 0.0, 0.0}}, obs.data());
  auto s = env.joint_state();
  CHECK(s.positions[0] == Approx(-0.5));
  CHECK(s.positions[2] == Approx(0.1));
  // thigh range [-150, 0] deg: relative position 2 (q - mid) / (hi - lo)
  const double lo = -150.0 * M_PI / 180.0;
  CHECK(obs[8] == Approx(2 * (-0.5 - lo / 2) / (0 - lo)).epsilon(1e-5));
  CHECK(env.torso_xyz()[2] == Approx(1.25));
  CHECK_THROWS_WITH(env.reset_to({{0.0}, {0.0}}, obs.data()), Catch::Contains("needs 3 positions"));
  CHECK_THROWS_WITH(env.reset_to({{NAN, 0, 0}, {0, 0, 0}}, obs.data()), Catch::Contains("not finite"));
}

TEST_CASE("bad actions are rejected with a clear error", "[env]") {
  LocomotionEnv env(find_env("bullet-hopper-v0"));
  std::vector<float> obs;
  env.reset_checked(0);
  CHECK_THROWS_WITH(env.step_checked({0.1, 0.2}, obs), Catch::Contains("action has 2 values, expected 3"));
  CHECK_THROWS_WITH(env.step_checked({0.1, NAN, 0.0}, obs), Catch::Contains("action[1] is not finite"));
  CHECK_THROWS_WITH(env.step_checked({0.1, INFINITY, 0.0}, obs), Catch::Contains("action[1] is not finite"));
}

TEST_CASE("a hopper given no torque falls and terminates and its rewards add up", "[env]") {
  LocomotionEnv env(find_env("bullet-hopper-v0"));
  std::vector<float> obs(15);
  env.reset(0, obs.data());
  std::vector<double> zero(3, 0.0);
  StepResult r;
  int steps = 0;
  do {
    r = env.step(zero.data(), obs.data());
    ++steps;
    CHECK(r.reward == Approx(r.terms.total()));
    CHECK(r.terms.electricity == 0.0);  // no action, no cost
  } while (!r.terminated && steps < 1000);
  CHECK(r.terminated);
  CHECK_FALSE(r.truncated);
  CHECK(r.terms.alive == -1.0);
  CHECK(steps < 100);
}

TEST_CASE("the half cheetah never terminates and is truncated at 1000 steps", "[env]") {
  LocomotionEnv env(find_env("bullet-halfcheetah-v0"));
  std::vector<float> obs(26);
  env.reset(0, obs.data());
  std::vector<double> a(6, 0.0);
  StepResult r;
  int steps = 0;
  do {
    for (int k = 0; k < 6; ++k) a[k] = std::sin(0.1 * steps + k);
    r = env.step(a.data(), obs.data());
    ++steps;
    REQUIRE_FALSE(r.terminated);
  } while (!r.truncated);
  CHECK(steps == 1000);
  CHECK(env.elapsed_steps() == 1000);
}
