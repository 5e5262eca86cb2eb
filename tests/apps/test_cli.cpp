// The modiff command as a user meets it: outputs, exit codes, one-line errors.
#include <catch2/catch.hpp>
#include <cstdio>
#include <cstdlib>
#include <unistd.h>
#include <sys/wait.h>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "cli_runner.h"

using namespace modiff_test;

TEST_CASE("cli: envs lists the four tasks", "[cli]") {
  Result r = modiff("envs --json");
  CHECK(r.code == 0);
  for (const char* id : {"bullet-hopper-v0", "bullet-walker2d-v0", "bullet-halfcheetah-v0", "bullet-ant-v0"})
    CHECK(r.out.find(id) != std::string::npos);
  CHECK(r.out.find("\"obs_dim\": 28") != std::string::npos);
}

TEST_CASE("cli: rollout prints the summary JSON the issue specifies", "[cli]") {
  Result r = modiff("rollout --env HopperBulletEnv-v0 --policy random --episodes 4 --seed 3 --json");
  REQUIRE(r.code == 0);
  for (const char* key : {"\"env\": \"bullet-hopper-v0\"", "\"policy\": \"random\"", "\"episodes\": 4", "\"seed\": 3",
                          "\"return\"", "\"length\"", "\"mean\"", "\"std\"", "\"min\"", "\"max\""})
    CHECK(r.out.find(key) != std::string::npos);
  CHECK(r.err.empty());
}

TEST_CASE("cli: rollout results do not depend on --threads", "[cli]") {
  Result one = modiff("rollout --env bullet-walker2d-v0 --episodes 6 --seed 1 --threads 1 --json");
  Result two = modiff("rollout --env bullet-walker2d-v0 --episodes 6 --seed 1 --threads 2 --json");
  REQUIRE(one.code == 0);
  CHECK(one.out == two.out);
}

TEST_CASE("cli: bad input gives one error line and a non-zero exit", "[cli]") {
  struct Case {
    const char* args;
    int code;
    const char* fragment;
  };
  const Case cases[] = {
      {"rollout --env bullet-humanoid-v0", 1, "unknown env 'bullet-humanoid-v0'"},
      {"rollout --env bullet-hopper-v0 --policy expert", 2, "--policy: 'expert' is not one of random, zero"},
      {"rollout --env bullet-hopper-v0 --episodes 0", 2, "--episodes: '0' is outside"},
      {"rollout --env bullet-hopper-v0 --episodes many", 2, "--episodes"},
      {"rollout --env bullet-hopper-v0 --threads -2", 2, "--threads: '-2' is outside"},
      {"rollout --env bullet-hopper-v0 --frobnicate", 2, "frobnicate"},
      {"rollout", 2, "--env is required"},
      {"fidelity /nonexistent/golden.h5", 1, "cannot open file"},
      {"teleport", 2, "teleport"},
      {"bench env --seconds -1", 2, "--seconds"},  // a bad value is a bad command line (exit 2)
      {"behavior train --env bullet-humanoid-v0", 1, "unknown env 'bullet-humanoid-v0'"},
      {"behavior train --env bullet-hopper-v0 --resume --out /nonexistent/run", 1, "no checkpoint to resume from"},
      {"behavior train --env bullet-hopper-v0 --device tpu", 2, "--device: 'tpu' is not one of auto, cpu, cuda"},
      {"data build bullet-hopper-random-v0 --transitions 0 --out /tmp/modiff_never.hdf5", 2, "--transitions: '0' is outside"},
  };
  for (const auto& c : cases) {
    INFO("modiff " << c.args << "\nstderr: " << modiff(c.args).err);
    Result r = modiff(c.args);
    CHECK(r.code == c.code);
    CHECK(lines(r.err) == 1);
    CHECK(r.err.find(c.fragment) != std::string::npos);
  }
}

TEST_CASE("cli: a truncated HDF5 file is rejected without a crash", "[cli]") {
  const std::string src = std::string(MODIFF_TEST_DATA_DIR) + "/golden/hopper.h5";
  const std::string cut = (std::filesystem::temp_directory_path() / "modiff_truncated.h5").string();
  std::string bytes = slurp(src);
  std::ofstream(cut, std::ios::binary) << bytes.substr(0, bytes.size() / 2);
  Result r = modiff("fidelity " + cut);
  CHECK(r.code == 1);
  CHECK(lines(r.err) == 1);
  CHECK(r.err.find(cut) != std::string::npos);
  std::remove(cut.c_str());
}

TEST_CASE("cli: fidelity reports per-step errors as JSON", "[cli]") {
  Result r = modiff("fidelity " + std::string(MODIFF_TEST_DATA_DIR) + "/golden/hopper.h5 --json");
  REQUIRE(r.code == 0);
  for (const char* key : {"\"robot\":\"hopper\"", "\"steps_reference\"", "\"steps_replayed\"", "\"obs_max_abs_error\"",
                          "\"reward_abs_error\"", "\"name\":\"zero_seed0\""})
    CHECK(r.out.find(key) != std::string::npos);
}

TEST_CASE("cli: robot shows the multibody PyBullet's importer would build", "[cli]") {
  Result r = modiff("robot " + std::string(MODIFF_ASSETS_DIR) + "/robots/hopper.xml --json");
  REQUIRE(r.code == 0);
  // hopper torso: 1000 kg/m^3 x (sphere r 0.05 + cylinder 0.4 m), as PyBullet computes it
  CHECK(r.out.find("\"fixed_base\": true") != std::string::npos);
  CHECK(r.out.find("3.66519") != std::string::npos);
  CHECK(r.out.find("\"joint\": \"thigh_joint\"") != std::string::npos);
}

TEST_CASE("cli: a malformed robot file is one error line naming file and line", "[cli]") {
  const std::string path = (std::filesystem::temp_directory_path() / "modiff_bad_robot.xml").string();
  std::ofstream(path) << "<mujoco>\n<worldbody>\n<body name=\"a\">\n<geom type=\"mesh\" size=\"1\"/>\n</body></worldbody></mujoco>\n";
  Result r = modiff("robot " + path);
  CHECK(r.code == 1);
  CHECK(lines(r.err) == 1);
  CHECK(r.err.find(path + ":4:") != std::string::npos);
  CHECK(r.err.find("unsupported geom type 'mesh'") != std::string::npos);
  std::remove(path.c_str());
  Result missing = modiff("robot /nonexistent/robot.xml");
  CHECK(missing.code == 1);
  CHECK(missing.err.find("cannot open robot file") != std::string::npos);
}

TEST_CASE("cli: --help works for every command", "[cli]") {
  for (const char* cmd : {"", "envs", "rollout", "fidelity", "bench", "bench env", "bench data", "run", "info", "robot", "data", "data import", "data info", "data list", "data build", "behavior", "behavior train", "behavior export"}) {
    Result r = modiff(std::string(cmd) + " --help");
    INFO(cmd);
    CHECK(r.code == 0);
    CHECK(r.out.find("Usage") != std::string::npos);
  }
}

TEST_CASE("cli: docs/agents.md's hyperparameter tables are what modiff hyperparameters prints", "[cli][docs]") {
  // Each table sits between "<!-- modiff hyperparameters ARGS -->" and "<!-- end -->": the command with ARGS
  // must print it exactly, so the docs cannot drift from the algorithms' tables.
  const std::string doc = slurp(std::string(MODIFF_SOURCE_DIR) + "/docs/agents.md");
  const std::string open = "<!-- modiff hyperparameters ", close = "<!-- end -->";
  int tables = 0;
  for (size_t at = doc.find(open); at != std::string::npos; at = doc.find(open, at + 1)) {
    const size_t args_end = doc.find(" -->\n", at);
    REQUIRE(args_end != std::string::npos);
    const std::string args = doc.substr(at + open.size(), args_end - at - open.size());
    const size_t body = args_end + 5, end = doc.find(close, body);
    REQUIRE(end != std::string::npos);
    const Result r = modiff("hyperparameters " + args);
    INFO(args);
    REQUIRE(r.code == 0);
    CHECK(r.out == doc.substr(body, end - body));
    ++tables;
  }
  CHECK(tables == 4);  // idql, dql, cfg, edp
}

TEST_CASE("cli: modiff hyperparameters shows per-dataset values and overrides", "[cli]") {
  const Result walker = modiff("hyperparameters --algo dql --dataset bullet-walker2d-medium-v0 --json");
  REQUIRE(walker.code == 0);
  const auto j = nlohmann::json::parse(walker.out);
  CHECK(j.at("policy.max_grad_norm").at("value") == "1.0");  // Diffusion-QL's walker2d-medium limit
  CHECK(j.at("guidance.max_grad_norm").at("value") == "1.0");
  const Result hopper = modiff("hyperparameters --algo dql --dataset bullet-hopper-medium-replay-v0 --set eta=0.5 --json");
  REQUIRE(hopper.code == 0);
  const auto h = nlohmann::json::parse(hopper.out);
  CHECK(h.at("policy.max_grad_norm").at("value") == "4.0");
  CHECK(h.at("eta").at("value") == "0.5");
  // A twin-q guidance beside IDQL takes Diffusion-QL's critic numbers.
  const Result mixed = modiff("hyperparameters --algo idql --guidance-kind twin-q --json");
  REQUIRE(mixed.code == 0);
  const auto m = nlohmann::json::parse(mixed.out);
  CHECK(m.at("guidance.layers").at("value") == "3");
  CHECK(m.at("batch").at("value") == "512");
  CHECK_FALSE(m.contains("guidance.expectile"));
}
