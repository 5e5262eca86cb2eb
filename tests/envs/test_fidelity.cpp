// Fidelity against PyBullet: replays the golden episodes (copied from
// ../shared/golden into tests/data/golden) with the code path of `modiff
// fidelity`. Tolerances are set at what modiff reaches (docs/fidelity.md):
// observations within 1e-5 max-abs and rewards within 1e-5 over the first 20
// steps (the aim is 1e-4), and the same termination step.
#include <catch2/catch.hpp>
#include <cmath>

#include "modiff/common/error.h"
#include "modiff/datasets/golden.h"
#include "modiff/envs/fidelity.h"

using namespace modiff;

namespace {

void check_golden(const std::string& robot) {
  const std::string path = std::string(MODIFF_TEST_DATA_DIR) + "/golden/" + robot + ".h5";
  auto ref = datasets::load_reference_file(path);
  const auto& spec = datasets::env_for_robot(ref.robot, path);
  envs::LocomotionEnv env(spec);
  REQUIRE(ref.episodes.size() == 6);
  for (const auto* ep : envs::recording_order(ref.episodes)) {
    INFO(robot << " " << ep->name);
    auto fid = envs::replay_reference(env, *ep);
    CHECK(fid.steps_replayed == fid.steps_reference);
    double obs20 = 0, rew20 = 0;
    for (size_t t = 0; t < fid.obs_max_abs_error.size() && t <= 20; ++t) obs20 = std::max(obs20, fid.obs_max_abs_error[t]);
    for (size_t t = 0; t < fid.reward_abs_error.size() && t < 20; ++t) rew20 = std::max(rew20, fid.reward_abs_error[t]);
    INFO("obs error over 20 steps " << obs20 << ", reward error " << rew20);
    CHECK(obs20 < 1e-5);
    CHECK(rew20 < 1e-5);
  }
}

}  // namespace

TEST_CASE("fidelity: hopper replays PyBullet's episodes", "[fidelity]") { check_golden("hopper"); }
TEST_CASE("fidelity: walker2d replays PyBullet's episodes", "[fidelity]") { check_golden("walker2d"); }
TEST_CASE("fidelity: halfcheetah replays PyBullet's episodes", "[fidelity]") { check_golden("halfcheetah"); }
TEST_CASE("fidelity: ant replays PyBullet's episodes", "[fidelity]") { check_golden("ant"); }

TEST_CASE("fidelity: the recording order puts zero before sine, seeds ascending", "[fidelity]") {
  std::vector<envs::ReferenceEpisode> eps(4);
  eps[0].name = "sine_seed1";
  eps[1].name = "zero_seed10";
  eps[2].name = "zero_seed2";
  eps[3].name = "sine_seed0";
  auto order = envs::recording_order(eps);
  CHECK(order[0]->name == "zero_seed2");
  CHECK(order[1]->name == "zero_seed10");
  CHECK(order[2]->name == "sine_seed0");
  CHECK(order[3]->name == "sine_seed1");
}

TEST_CASE("fidelity: a golden file of another robot's joints is rejected", "[fidelity]") {
  auto ref = datasets::load_reference_file(std::string(MODIFF_TEST_DATA_DIR) + "/golden/hopper.h5");
  envs::LocomotionEnv walker(envs::find_env("bullet-walker2d-v0"));
  CHECK_THROWS_WITH(envs::replay_reference(walker, ref.episodes[0]), Catch::Contains("joint names do not match"));
}

TEST_CASE("fidelity: missing and corrupt files give one clear error", "[fidelity]") {
  CHECK_THROWS_WITH(datasets::load_reference_file("/nonexistent.h5"), Catch::Contains("cannot open file"));
  const std::string junk = std::string(MODIFF_TEST_DATA_DIR) + "/../CMakeLists.txt";
  CHECK_THROWS_WITH(datasets::load_reference_file(junk), Catch::Contains("not an HDF5 file"));
}
