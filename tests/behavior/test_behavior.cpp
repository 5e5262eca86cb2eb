// SAC behavior training, behavior policy files, and dataset generation with them.
#include <tbb/global_control.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "cli_runner.h"
#include "modiff/behavior/behavior_suite.h"
#include "modiff/behavior/gaussian_policy.h"
#include "modiff/behavior/sac.h"
#include "modiff/common/error.h"
#include "modiff/common/remove_tree.h"
#include "modiff/datasets/generate.h"

using namespace modiff;
namespace fs = std::filesystem;

namespace {

fs::path fresh_dir(const std::string& tag) {
  fs::path d = fs::temp_directory_path() / ("modiff_agents_" + tag + "_" + std::to_string(::getpid()));
  modiff::remove_tree((d).string());
  return d;
}

// A hopper SAC run small enough for a test: tiny networks, few steps, CPU.
struct TinyRun {
  behavior::SacRunOptions opt;
  behavior::SacConfig cfg;
  TinyRun(const fs::path& out, long steps, long snapshot_every, long learning_starts) {
    opt.env_id = "bullet-hopper-v0";
    opt.total_steps = steps;
    opt.snapshot_every = snapshot_every;
    opt.eval_episodes = 2;
    opt.out_dir = out.string();
    opt.quiet = true;
    opt.device = "cpu";
    cfg.learning_starts = learning_starts;
    cfg.batch_size = 32;
    cfg.hidden = 32;
  }
};

}  // namespace

TEST_CASE("sac: trains, snapshots, checkpoints and resumes", "[agents][sac]") {
  const fs::path dir = fresh_dir("sac");
  TinyRun run(dir, 300, 150, 100);
  auto& opt = run.opt;
  auto& cfg = run.cfg;
  auto first = behavior::train_sac(opt, cfg);
  REQUIRE(first.snapshots.size() == 2);
  CHECK(first.snapshots[1].step == 300);
  CHECK(fs::exists(dir / first.snapshots[1].file));
  CHECK(fs::exists(dir / "checkpoint" / "state.json"));
  // A second run into the same directory must be an explicit resume.
  CHECK_THROWS_WITH(behavior::train_sac(opt, cfg), Catch::Contains("use --resume"));
  opt.resume = true;
  opt.total_steps = 450;
  auto resumed = behavior::train_sac(opt, cfg);
  REQUIRE(resumed.snapshots.size() == 3);
  CHECK(resumed.snapshots[2].step == 450);
  nlohmann::json state;
  std::ifstream(dir / "checkpoint" / "state.json") >> state;
  CHECK(state["step"] == 450);
  // A snapshot is a loadable behavior policy that acts in [-1, 1].
  auto policy = behavior::GaussianPolicy::load((dir / resumed.snapshots[2].file).string());
  CHECK(policy.info().env_id == "bullet-hopper-v0");
  std::vector<float> obs(2 * 15, 0.1f);
  std::vector<double> a(2 * 3), b(2 * 3);
  policy.reseed(5);
  policy.act(obs.data(), 2, a.data(), false);
  policy.reseed(5);
  policy.act(obs.data(), 2, b.data(), false);
  CHECK(a == b);
  for (double v : a) CHECK(std::abs(v) <= 1.0);
  modiff::remove_tree((dir).string());
}

TEST_CASE("sac: bad runs are refused", "[agents][sac]") {
  behavior::SacRunOptions opt;
  opt.env_id = "bullet-hopper-v0";
  opt.out_dir = fresh_dir("none").string();
  opt.resume = true;
  CHECK_THROWS_WITH(behavior::train_sac(opt), Catch::Contains("no checkpoint to resume from"));
  opt.resume = false;
  opt.env_id = "bullet-humanoid-v0";
  CHECK_THROWS_WITH(behavior::train_sac(opt), Catch::Contains("unknown env"));
}

TEST_CASE("policy files: a corrupt or mismatched file is rejected", "[agents]") {
  const fs::path dir = fresh_dir("policy");
  fs::create_directories(dir);
  auto policy = behavior::GaussianPolicy::random_init("bullet-walker2d-v0", 64, 3);
  const std::string path = (dir / "actor.pt").string();
  policy.save(path);
  CHECK(behavior::GaussianPolicy::load(path).info().act_dim == 6);
  std::ofstream(path, std::ios::binary | std::ios::trunc) << "garbage";
  CHECK_THROWS_WITH(behavior::GaussianPolicy::load(path), Catch::Contains("cannot load actor weights"));
  CHECK_THROWS_WITH(behavior::GaussianPolicy::load((dir / "absent.pt").string()), Catch::Contains("cannot open"));
  modiff::remove_tree((dir).string());
}

TEST_CASE("dataset generation depends on the seed only, not the thread count or the number of envs",
          "[agents][datasets]") {
  const auto& spec = envs::find_env("bullet-hopper-v0");
  auto policy = behavior::GaussianPolicy::random_init(spec.id, 64, 11);
  auto build = [&](size_t threads, int num_envs, long transitions = 700) {
    tbb::global_control limit(tbb::global_control::max_allowed_parallelism, threads);
    datasets::GenerateOptions opt;
    opt.transitions = transitions;
    opt.seed = 11;
    opt.num_envs = num_envs;
    return datasets::generate_dataset(
        spec, [&](const float* o, int n, const uint64_t* keys, double* a) { policy.sample_keyed(o, n, keys, a); },
        opt);
  };
  // One env running episode after episode is the definition; 3 and 8 side by side, on 1 or 2 threads, must
  // give the same rows.
  const auto one = build(1, 1), two = build(2, 8), three = build(2, 3);
  REQUIRE(one.size() == 700);
  for (const auto* other : {&two, &three}) {
    CHECK(one.observations == other->observations);
    CHECK(one.next_observations == other->next_observations);
    CHECK(one.actions == other->actions);
    CHECK(one.rewards == other->rewards);
    CHECK(one.terminals == other->terminals);
    CHECK(one.timeouts == other->timeouts);
  }
  // A shorter dataset is the longer one's first rows (the cut row a timeout), not a different sample.
  const auto shorter = build(2, 8, 500);
  REQUIRE(shorter.size() == 500);
  CHECK(std::equal(shorter.actions.begin(), shorter.actions.end(), one.actions.begin()));
  CHECK(std::equal(shorter.rewards.begin(), shorter.rewards.end(), one.rewards.begin()));
  CHECK(shorter.timeouts.back() == 1);
  datasets::validate_dataset(one, "generated", &spec);  // consistent episode boundaries
}

TEST_CASE("cli: data build makes a random-policy dataset, reproducibly", "[agents][cli]") {
  using modiff_test::modiff;
  const fs::path home = fresh_dir("home");
  setenv("MODIFF_HOME", home.c_str(), 1);
  auto a = modiff("data build bullet-walker2d-random-v0 --transitions 3000 --seed 2 --json");
  REQUIRE(a.code == 0);
  CHECK(a.out.find("\"transitions\": 3000") != std::string::npos);
  auto again = modiff("data build bullet-walker2d-random-v0 --transitions 3000 --seed 2");
  CHECK(again.code == 1);
  CHECK(again.err.find("already exists") != std::string::npos);
  auto b = modiff("data build bullet-walker2d-random-v0 --transitions 3000 --seed 2 --force --json");
  REQUIRE(b.code == 0);
  auto sha = [](const std::string& s) { return s.substr(s.find("\"sha256\""), 80); };
  CHECK(sha(a.out) == sha(b.out));
  // Every env's committed policies build their levels; a missing policy file is named.
  auto ant = modiff("data build bullet-ant-expert-v0 --transitions 200 --json");
  REQUIRE(ant.code == 0);
  CHECK(ant.out.find("\"transitions\": 200") != std::string::npos);
  auto missing = modiff("data build my-ant --env bullet-ant-v0 --policy /nonexistent.pt --transitions 100");
  CHECK(missing.code == 1);
  CHECK(missing.err.find("/nonexistent.pt.json: cannot open policy description") != std::string::npos);
  auto custom = modiff("data build my-data --transitions 100");
  CHECK(custom.code == 1);
  CHECK(custom.err.find("give --env and --policy") != std::string::npos);
  unsetenv("MODIFF_HOME");
  modiff::remove_tree((home).string());
}

TEST_CASE("behavior export and the suite levels built from it", "[agents][datasets]") {
  using modiff_test::modiff;
  const fs::path dir = fresh_dir("suite"), assets = dir / "assets";
  TinyRun run(dir / "run", 400, 100, 50);
  const auto& opt = run.opt;
  behavior::train_sac(run.opt, run.cfg);
  auto exported = modiff("behavior export " + opt.out_dir + " --expert-step 400 --medium-step 300 --to " +
                         (assets / "behavior" / "bullet-hopper-v0").string());
  REQUIRE(exported.code == 0);
  CHECK(fs::exists(assets / "behavior" / "bullet-hopper-v0" / "replay" / "step_00000200.pt"));
  setenv("MODIFF_ASSETS", assets.c_str(), 1);
  behavior::SuiteBuildOptions build;
  build.transitions = 500;
  build.num_envs = 4;
  const auto& spec = envs::find_env("bullet-hopper-v0");
  for (const auto& entry : datasets::suite()) {
    if (entry.env != &spec) continue;
    INFO(entry.name);
    auto d = behavior::build_suite_dataset(entry, build);
    datasets::validate_dataset(d, entry.name, &spec);
    if (entry.level == "medium-expert") CHECK(d.size() == 1000);
    else if (entry.level == "medium-replay") CHECK(d.size() == 300);  // training steps until the medium snapshot
    else CHECK(d.size() == 500);
    CHECK(d.attributes.level == entry.level);
  }
  unsetenv("MODIFF_ASSETS");
  auto bad = modiff("behavior export " + (dir / "nothing").string());
  CHECK(bad.code == 1);
  CHECK(bad.err.find("not a `modiff behavior train` run") != std::string::npos);
  modiff::remove_tree(dir.string());
}
