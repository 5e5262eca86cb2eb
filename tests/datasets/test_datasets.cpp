// D4RL-layout datasets: round trip, validation, imports, h5py compatibility,
// and that no failure destroys an existing file.
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <unistd.h>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <nlohmann/json.hpp>

#include "modiff/common/error.h"
#include "modiff/common/remove_tree.h"
#include "modiff/common/rng.h"
#include "modiff/common/spawn.h"
#include "modiff/datasets/d4rl_dataset.h"
#include "modiff/datasets/data_home.h"
#include "modiff/datasets/hdf5_file.h"
#include "modiff/datasets/import.h"
#include "modiff/datasets/sha256.h"
#include "modiff/envs/locomotion_env.h"
#include "h5py_python.h"
#include "skip.h"

using namespace modiff;
namespace fs = std::filesystem;

namespace {

// A temporary directory used as $MODIFF_HOME for one test.
struct TempHome {
  fs::path dir;
  TempHome() {
    dir = fs::temp_directory_path() / ("modiff_test_home_" + std::to_string(::getpid()) + "_" +
                                       std::to_string(reinterpret_cast<uintptr_t>(this) & 0xffff));
    modiff::remove_tree((dir).string());
    fs::create_directories(dir);
    setenv("MODIFF_HOME", dir.c_str(), 1);
  }
  ~TempHome() {
    modiff::remove_tree((dir).string());
    unsetenv("MODIFF_HOME");
  }
  std::string file(const std::string& name) const { return (dir / name).string(); }
};

// Random-action transitions of a real env, with episode ends as the env reports them.
datasets::Dataset small_dataset(const envs::EnvSpec& spec, int transitions, uint64_t seed) {
  envs::LocomotionEnv env(spec);
  Rng rng(seed);
  datasets::Dataset d;
  d.obs_dim = spec.obs_dim;
  d.act_dim = spec.act_dim;
  d.attributes.env_id = spec.id;
  d.attributes.name = "test";
  d.attributes.level = "random";
  d.attributes.seed = static_cast<long long>(seed);
  d.attributes.behavior_policy = "uniform random actions";
  std::vector<float> obs = env.reset_checked(seed), next(spec.obs_dim);
  std::vector<double> a(spec.act_dim);
  for (int t = 0; t < transitions; ++t) {
    for (auto& v : a) v = rng.uniform(-1, 1);
    auto r = env.step(a.data(), next.data());
    d.observations.insert(d.observations.end(), obs.begin(), obs.end());
    for (double v : a) d.actions.push_back(static_cast<float>(v));
    d.rewards.push_back(static_cast<float>(r.reward));
    d.terminals.push_back(r.terminated);
    d.timeouts.push_back(r.truncated);
    d.next_observations.insert(d.next_observations.end(), next.begin(), next.end());
    if (r.terminated || r.truncated) obs = env.reset_checked(std::nullopt);
    else obs = next;
  }
  return d;
}

void expect_error(const std::function<void()>& f, const std::string& fragment) {
  try {
    f();
    FAIL("no error; expected one containing: " << fragment);
  } catch (const Error& e) {
    INFO(e.what());
    CHECK(std::string(e.what()).find(fragment) != std::string::npos);
  }
}

}  // namespace

TEST_CASE("datasets: a generated dataset survives a write/read round trip", "[datasets]") {
  TempHome home;
  const auto& spec = envs::find_env("bullet-hopper-v0");
  auto d = small_dataset(spec, 300, 4);
  const std::string path = home.file("round.hdf5");
  const std::string sha = datasets::write_d4rl_file(path, d);
  CHECK(sha == datasets::sha256_file(path));
  CHECK(sha.size() == 64);
  auto back = datasets::read_d4rl_file(path);
  CHECK(back.observations == d.observations);
  CHECK(back.actions == d.actions);
  CHECK(back.rewards == d.rewards);
  CHECK(back.terminals == d.terminals);
  CHECK(back.timeouts == d.timeouts);
  CHECK(back.next_observations == d.next_observations);
  CHECK(back.attributes.env_id == spec.id);
  CHECK(back.attributes.seed == 4);
  auto episodes = datasets::summarize_episodes(back);
  CHECK(episodes.returns.size() >= 5);  // random hopper episodes last ~12 steps
  double total = 0;
  for (float r : d.rewards) total += r;
  double in_episodes = 0;
  for (double r : episodes.returns) in_episodes += r;
  CHECK(in_episodes <= total + 1e-3);
}

TEST_CASE("datasets: the same seed builds an identical file", "[datasets]") {
  TempHome home;
  const auto& spec = envs::find_env("bullet-walker2d-v0");
  const std::string a = datasets::write_d4rl_file(home.file("a.hdf5"), small_dataset(spec, 200, 9));
  sleep(1);  // files written in different seconds must still be byte-identical
  const std::string b = datasets::write_d4rl_file(home.file("b.hdf5"), small_dataset(spec, 200, 9));
  CHECK(a == b);
}

TEST_CASE("datasets: files open in h5py and work with D4RL's qlearning_dataset logic", "[datasets][h5py]") {
  if (modiff_test::python_with_h5py().empty()) {
    MODIFF_SKIP("no python3 with h5py here (scripts/setup-deps installs python3-h5py)");
  }
  TempHome home;
  const auto& spec = envs::find_env("bullet-hopper-v0");
  const std::string path = home.file("q.hdf5");
  datasets::write_d4rl_file(path, small_dataset(spec, 120, 1));
  const std::string script = home.file("check.py"), out = home.file("out.txt");
  std::ofstream(script) << R"(import sys, h5py, numpy as np
f = h5py.File(sys.argv[1], 'r')
obs, act, rew = f['observations'][:], f['actions'][:], f['rewards'][:]
term, tout, nxt = f['terminals'][:], f['timeouts'][:], f['next_observations'][:]
assert obs.dtype == np.float32 and act.dtype == np.float32 and rew.dtype == np.float32
assert term.dtype == np.bool_ and tout.dtype == np.bool_, (term.dtype, tout.dtype)
assert obs.shape == (120, 15) and act.shape == (120, 3) and rew.shape == (120,)
assert f.attrs['env_id'] == 'bullet-hopper-v0'
# D4RL's qlearning_dataset: next observation = the following row, skipping timeout rows.
n = 0
for i in range(len(obs) - 1):
    if tout[i]:
        continue
    if not term[i]:
        assert np.array_equal(obs[i + 1], nxt[i]), i
    n += 1
print('ok', n, int(term.sum()))
)";
  const std::string cmd = modiff_test::python_with_h5py() + " " + script + " " + path + " > " + out + " 2>&1";
  const int rc = std::system(cmd.c_str());
  std::stringstream ss;
  ss << std::ifstream(out).rdbuf();
  INFO(ss.str());
  CHECK(rc == 0);
  CHECK(ss.str().rfind("ok ", 0) == 0);
}

TEST_CASE("datasets: bad content is rejected with the key and index", "[datasets]") {
  TempHome home;
  const auto& spec = envs::find_env("bullet-hopper-v0");
  auto d = small_dataset(spec, 50, 2);
  auto nan_obs = d;
  nan_obs.observations[3 * 15 + 4] = NAN;
  expect_error([&] { datasets::validate_dataset(nan_obs, "x", &spec); }, "'observations': non-finite value (nan) at row 3, column 4");
  auto inf_reward = d;
  inf_reward.rewards[7] = INFINITY;
  expect_error([&] { datasets::validate_dataset(inf_reward, "x", &spec); }, "'rewards': non-finite value (inf) at index 7");
  expect_error([&] { datasets::validate_dataset(d, "x", &envs::find_env("bullet-ant-v0")); },
               "'observations': width 15 does not match bullet-ant-v0 (28)");
  auto short_actions = d;
  short_actions.actions.pop_back();
  expect_error([&] { datasets::validate_dataset(short_actions, "x", &spec); }, "'actions': expected 50 rows of 3");
  for (const char* flags : {"terminals", "timeouts"}) {
    for (const int change : {-1, +1}) {
      auto wrong_length = d;
      auto& column = std::string(flags) == "terminals" ? wrong_length.terminals : wrong_length.timeouts;
      if (change < 0) column.pop_back();
      else column.push_back(0);
      expect_error([&] { datasets::validate_dataset(wrong_length, "x", &spec); },
                   "'" + std::string(flags) + "': expected 50 values");
    }
  }
  auto broken_episode = d;
  for (size_t i = 0; i + 1 < broken_episode.size(); ++i)
    if (broken_episode.terminals[i]) {
      broken_episode.terminals[i] = 0;
      expect_error([&] { datasets::validate_dataset(broken_episode, "x", &spec); },
                   "row " + std::to_string(i) + " ends no episode");
      break;
    }
}

TEST_CASE("datasets: missing keys, wrong shapes, truncated and corrupt files give clear errors", "[datasets]") {
  TempHome home;
  const auto& spec = envs::find_env("bullet-hopper-v0");
  auto d = small_dataset(spec, 40, 3);
  const std::string good = home.file("good.hdf5");
  datasets::write_d4rl_file(good, d);

  const std::string missing = home.file("missing.hdf5");
  {
    auto f = h5::File::create(missing);
    f.write_f32("observations", d.observations.data(), {40, 15});
    f.write_f32("actions", d.actions.data(), {40, 3});
    f.write_f32("rewards", d.rewards.data(), {40});
    f.write_bool("terminals", d.terminals.data(), 40);
  }
  expect_error([&] { datasets::read_d4rl_file(missing); }, "'timeouts': missing");

  const std::string rows = home.file("rows.hdf5");
  {
    auto f = h5::File::create(rows);
    f.write_f32("observations", d.observations.data(), {40, 15});
    f.write_f32("actions", d.actions.data(), {39, 3});
    f.write_f32("rewards", d.rewards.data(), {40});
    f.write_bool("terminals", d.terminals.data(), 40);
    f.write_bool("timeouts", d.timeouts.data(), 40);
  }
  expect_error([&] { datasets::read_d4rl_file(rows); }, "'actions': has 39 rows, observations has 40");
  expect_error([&] { datasets::read_d4rl_file(good, &envs::find_env("bullet-walker2d-v0")); },
               "attribute 'env_id' is bullet-hopper-v0, expected bullet-walker2d-v0");

  std::string bytes;
  {
    std::stringstream ss;
    ss << std::ifstream(good, std::ios::binary).rdbuf();
    bytes = ss.str();
  }
  const std::string truncated = home.file("truncated.hdf5");
  std::ofstream(truncated, std::ios::binary) << bytes.substr(0, bytes.size() * 2 / 3);
  CHECK_THROWS_AS(datasets::read_d4rl_file(truncated), Error);
  const std::string corrupt = home.file("corrupt.hdf5");
  std::string scrambled = bytes;
  for (size_t i = 0; i < scrambled.size(); i += 7) scrambled[i] = static_cast<char>(scrambled[i] ^ 0x5a);
  std::ofstream(corrupt, std::ios::binary) << scrambled;
  CHECK_THROWS_AS(datasets::read_d4rl_file(corrupt), Error);
  expect_error([&] { datasets::read_d4rl_file(home.file("absent.hdf5")); }, "cannot open file");
}

TEST_CASE("datasets: a hand-made d4rl-pybullet file converts to D4RL's conventions", "[datasets][import]") {
  TempHome home;
  const auto& spec = envs::find_env("bullet-hopper-v0");
  // Episode 1: 3 steps then a true termination; episode 2: a full 1000-step
  // time-limit episode; then 2 rows of an unfinished episode. Row t holds o_t,
  // a_t, and the reward/terminal of the step that arrived at o_t; each episode
  // ends with a dummy row (zero action, terminal 1).
  std::vector<float> obs, act, rew, term;
  int counter = 0;
  auto row = [&](float reward, float terminal, bool dummy) {
    for (int k = 0; k < 15; ++k) obs.push_back(static_cast<float>(counter) + 0.01f * k);
    for (int k = 0; k < 3; ++k) act.push_back(dummy ? 0.f : 0.1f * static_cast<float>(counter % 7));
    rew.push_back(reward);
    term.push_back(terminal);
    ++counter;
  };
  row(0, 0, false);
  row(1.5f, 0, false);
  row(2.5f, 0, false);
  row(3.5f, 1, true);  // arrived at o_3 by termination
  row(0, 0, false);
  for (int t = 1; t < 1000; ++t) row(1.0f, 0, false);
  row(1.0f, 1, true);  // time limit after 1000 steps
  row(0, 0, false);
  row(9.0f, 0, false);
  const std::string src = home.file("pyb.hdf5");
  {
    auto f = h5::File::create(src);
    const uint64_t n = rew.size();
    f.write_f32("observations", obs.data(), {n, 15});
    f.write_f32("actions", act.data(), {n, 3});
    f.write_f32("rewards", rew.data(), {n});
    f.write_f32("terminals", term.data(), {n});
  }
  auto r = datasets::import_dataset(src, datasets::ImportFormat::D4rlPybullet, "pyb", nullptr, false);
  CHECK(r.transitions == 3 + 1000 + 1);
  auto d = datasets::read_d4rl_file(datasets::dataset_path("pyb"));
  CHECK(d.attributes.env_id == spec.id);
  CHECK(d.rewards[0] == 1.5f);  // the reward a_0 earned
  CHECK(d.rewards[2] == 3.5f);
  CHECK(d.terminals[2] == 1);
  CHECK(d.timeouts[2] == 0);
  CHECK(d.actions[2 * 3] != 0.f);  // no dummy zero-action row
  CHECK(d.next_observations[2 * 15] == 3.0f);  // o_3
  CHECK(d.terminals[3 + 999] == 0);
  CHECK(d.timeouts[3 + 999] == 1);  // time-limit end converted to a timeout
  CHECK(d.rewards[1003] == 9.0f);
  CHECK(d.terminals[1003] == 0);
  CHECK(d.timeouts[1003] == 0);
  auto episodes = datasets::summarize_episodes(d);
  REQUIRE(episodes.returns.size() == 2);
  CHECK(episodes.returns[0] == Approx(7.5));
  CHECK(episodes.lengths[1] == 1000);
}

TEST_CASE("datasets: imports never replace an existing dataset by accident", "[datasets][import]") {
  TempHome home;
  const auto& spec = envs::find_env("bullet-hopper-v0");
  const std::string src = home.file("src.hdf5");
  datasets::write_d4rl_file(src, small_dataset(spec, 60, 5));
  auto first = datasets::import_dataset(src, datasets::ImportFormat::D4rl, "mine", nullptr, false);
  const std::string before = datasets::sha256_file(first.path);
  expect_error([&] { datasets::import_dataset(src, datasets::ImportFormat::D4rl, "mine", nullptr, false); },
               "already exists");
  // A failing import with --force (corrupt source) leaves the old file intact.
  const std::string bad = home.file("bad.hdf5");
  std::ofstream(bad) << "not hdf5 at all";
  CHECK_THROWS_AS(datasets::import_dataset(bad, datasets::ImportFormat::D4rl, "mine", nullptr, true), Error);
  CHECK(datasets::sha256_file(first.path) == before);
  expect_error([&] { datasets::import_dataset(src, datasets::ImportFormat::D4rl, "../escape", nullptr, false); },
               "must be 1-128 letters");
  // No temporary files are left behind.
  for (const auto& e : fs::directory_iterator(home.dir / "datasets")) CHECK(e.path().filename().string().find(".tmp") == std::string::npos);
}

#include "cli_runner.h"

TEST_CASE("cli: data import, info and list", "[datasets][cli]") {
  using modiff_test::lines;
  using modiff_test::modiff;
  TempHome home;
  const auto& spec = envs::find_env("bullet-walker2d-v0");
  const std::string src = home.file("walker.hdf5");
  datasets::write_d4rl_file(src, small_dataset(spec, 150, 8));

  auto imported = modiff("data import " + src + " --format d4rl --as walker-test --json");
  REQUIRE(imported.code == 0);
  CHECK(imported.out.find("\"transitions\": 150") != std::string::npos);

  auto info = modiff("data info walker-test --json");
  REQUIRE(info.code == 0);
  for (const char* key : {"\"name\": \"walker-test\"", "\"sha256\"", "\"transitions\": 150", "\"episodes\"",
                          "\"return\"", "\"normalized_return\"", "\"env\": \"bullet-walker2d-v0\""})
    CHECK(info.out.find(key) != std::string::npos);
  // info also takes a file path
  CHECK(modiff("data info " + src).code == 0);

  auto list = modiff("data list --json");
  REQUIRE(list.code == 0);
  CHECK(list.out.find("bullet-ant-medium-expert-v0") != std::string::npos);
  CHECK(list.out.find("walker-test") != std::string::npos);

  auto again = modiff("data import " + src + " --as walker-test");
  CHECK(again.code == 1);
  CHECK(lines(again.err) == 1);
  CHECK(again.err.find("already exists") != std::string::npos);
  auto format = modiff("data import " + src + " --format csv --as x");
  CHECK(format.code == 2);
  CHECK(format.err.find("--format: 'csv' is not one of d4rl, d4rl-pybullet") != std::string::npos);
  auto unknown = modiff("data info no-such-dataset");
  CHECK(unknown.code == 1);
  CHECK(unknown.err.find("neither a file nor in the data home") != std::string::npos);
  auto wrong_env = modiff("data import " + src + " --as w2 --env bullet-ant-v0");
  CHECK(wrong_env.code == 1);
  CHECK(wrong_env.err.find("expected bullet-ant-v0") != std::string::npos);
}

TEST_CASE("datasets: a D4RL-layout file written by h5py imports, with its episodes and returns", "[datasets][h5py]") {
  using modiff_test::modiff;
  modiff::SpawnOptions quiet;
  quiet.stderr_file = "/dev/null";
  if (modiff_test::python_with_h5py().empty())
    MODIFF_SKIP("no python3 with h5py here (scripts/setup-deps installs python3-h5py)");
  TempHome home;
  const std::string file = (home.dir / "from_h5py.hdf5").string(), script = (home.dir / "write.py").string();
  // Seven hopper rows as D4RL writes them (h5py's bool for the flags): an episode that terminates at row 3 and
  // one that times out at row 6. Returns by hand: 1 + 2 + 3 + 4 = 10 and 5 + 6 + 7 = 18.
  std::ofstream(script) << R"(import sys, h5py, numpy as np
n = 7
with h5py.File(sys.argv[1], 'w') as f:
    f['observations'] = np.arange(n * 15, dtype=np.float32).reshape(n, 15) / 100
    f['actions'] = np.zeros((n, 3), dtype=np.float32)
    f['rewards'] = np.arange(1, n + 1, dtype=np.float32)
    f['terminals'] = np.array([0, 0, 0, 1, 0, 0, 0], dtype=bool)
    f['timeouts'] = np.array([0, 0, 0, 0, 0, 0, 1], dtype=bool)
)";
  REQUIRE(modiff::run_program({modiff_test::python_with_h5py(), script, file}).exit_code == 0);
  const auto imported = modiff("data import " + file + " --format d4rl --as from-h5py --env bullet-hopper-v0 --json");
  INFO(imported.err);
  REQUIRE(imported.code == 0);
  CHECK(nlohmann::json::parse(imported.out).at("transitions") == 7);
  const auto info = modiff("data info from-h5py --json");
  REQUIRE(info.code == 0);
  const auto j = nlohmann::json::parse(info.out);
  CHECK(j.at("env") == "bullet-hopper-v0");
  CHECK(j.at("transitions") == 7);
  CHECK(j.at("episodes") == 2);
  CHECK(j.at("return").at("mean").get<double>() == Approx(14));
  CHECK(j.at("return").at("min").get<double>() == Approx(10));
  CHECK(j.at("return").at("max").get<double>() == Approx(18));
  // The observations arrive as written.
  const auto d = modiff::datasets::read_d4rl_file(j.at("file").get<std::string>());
  CHECK(d.observations[5 * 15 + 2] == Approx((5 * 15 + 2) / 100.0f));
}
