// Results fixed by their seed on any machine: small datasets of every robot's behavior policies, a dataset file,
// an evaluation of a committed policy and CPU training runs, each against a fingerprint committed in
// tests/data/fingerprints.json, at 1 and 2 threads. ctest also runs these cases under several OPENBLAS_CORETYPE
// values (tests/CMakeLists.txt): the fingerprints hold whatever BLAS kernel the machine would pick.
//
// After an intended change of results, MODIFF_UPDATE_FINGERPRINTS=FILE writes every value measured into FILE
// (the cases still fail where values differ); review it, then copy it over tests/data/fingerprints.json.
#include <tbb/global_control.h>

#include <catch2/catch.hpp>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <nlohmann/json.hpp>

#include "cli_runner.h"
#include "tiny_training.h"
#include "modiff/behavior/behavior_suite.h"
#include "modiff/torch/device.h"
#include "modiff/agents/inference_policy.h"
#include "modiff/agents/train.h"
#include "modiff/common/remove_tree.h"
#include "modiff/datasets/sha256.h"
#include "modiff/eval/evaluate.h"
#include "skip.h"

using namespace modiff;
namespace fs = std::filesystem;

namespace {

const std::string kFingerprints = std::string(MODIFF_TEST_DATA_DIR) + "/fingerprints.json";

nlohmann::json read_json(const std::string& path) {
  std::ifstream in(path);
  if (!in) return nlohmann::json::object();
  return nlohmann::json::parse(in);
}

// Compares `actual` with the committed value of section/key; records it where MODIFF_UPDATE_FINGERPRINTS says.
void check_fingerprint(const std::string& section, const std::string& key, const nlohmann::json& actual) {
  static const nlohmann::json committed = read_json(kFingerprints);
  if (const char* update = std::getenv("MODIFF_UPDATE_FINGERPRINTS"); update && *update) {
    nlohmann::json all = fs::exists(update) ? read_json(update) : committed;
    all[section][key] = actual;
    std::ofstream(update) << all.dump(2) << "\n";
  }
  INFO(section << " / " << key << ": measured " << actual.dump());
  const bool known = committed.contains(section) && committed[section].contains(key);
  CHECK(known);
  if (known) CHECK(committed[section][key] == actual);
}

// Evaluation and training fingerprints hold for the LibTorch they were committed with (fingerprints.json's
// "libtorch"): another LibTorch's elementwise kernels (exp, tanh, LayerNorm) round differently, so on the GPU
// machine's PyTorch 2.11 these cases skip, naming both versions. Dataset fingerprints use no LibTorch.
// Empty when this build links the LibTorch the fingerprints were committed for; else why not.
std::string other_libtorch() {
  const std::string build = modiff::torch_build_summary();
  const std::string committed = "LibTorch " + read_json(kFingerprints).value("libtorch", std::string("?")) + ";";
  if (build.rfind(committed, 0) == 0) return "";
  return "the evaluation and training fingerprints are committed for " + committed.substr(0, committed.size() - 1) +
         "; this build has " + build.substr(0, build.find(';'));
}

// Doubles as C99 hex literals: exact, and readable in a diff.
nlohmann::json hex(const std::vector<double>& values) {
  nlohmann::json out = nlohmann::json::array();
  for (double v : values) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%a", v);
    out.push_back(buf);
  }
  return out;
}

std::vector<double> returns_of(const std::vector<eval::EpisodeRecord>& records) {
  std::vector<double> r;
  for (const auto& e : records) r.push_back(e.episode_return);
  return r;
}

// metrics.csv without its last column (step_ms, a wall time).
std::string metrics_without_times(const std::string& path) {
  std::istringstream in(modiff_test::slurp(path));
  std::string out;
  for (std::string line; std::getline(in, line);) out += line.substr(0, line.rfind(',')) + "\n";
  return out;
}

struct TempDir {
  fs::path path;
  explicit TempDir(const std::string& tag)
      : path(fs::temp_directory_path() / ("modiff_repro_" + tag + "_" + std::to_string(::getpid()))) {
    remove_tree(path.string());
    fs::create_directories(path);
  }
  ~TempDir() { remove_tree(path.string()); }
};

std::vector<double> evaluate_returns(const std::string& diffusion, const std::string& guidance, int threads,
                                     int max_envs) {
  tbb::global_control limit(tbb::global_control::max_allowed_parallelism, threads);
  agents::InferenceOptions io;
  io.device = "cpu";
  io.candidates = guidance == "none" ? 1 : 8;
  auto policy = agents::InferencePolicy::load(diffusion, guidance, io);
  eval::EvalOptions opt;
  opt.seeds = {0, 1};
  opt.episodes = 2;
  opt.max_envs = max_envs;
  opt.max_steps = 60;
  return returns_of(eval::evaluate(policy, eval::env_for_policy(policy, ""), opt));
}

}  // namespace

TEST_CASE("fingerprints: small datasets of every robot's behavior policies", "[repro]") {
  for (const auto& entry : datasets::suite()) {
    if (entry.level == "medium-replay") continue;  // its size is its own (the replay up to the medium policy)
    behavior::SuiteBuildOptions opt;
    opt.transitions = 1500;
    opt.num_envs = 7;
    const auto one_thread = [&] {
      tbb::global_control limit(tbb::global_control::max_allowed_parallelism, 1);
      return behavior::build_suite_dataset(entry, opt);
    }();
    opt.num_envs = 64;
    const auto wide = behavior::build_suite_dataset(entry, opt);
    INFO(entry.name);
    CHECK(datasets::sha256_rows(one_thread) == datasets::sha256_rows(wide));
    check_fingerprint("dataset rows, 1500 transitions per policy, seed 0", entry.name, datasets::sha256_rows(wide));
  }
}

TEST_CASE("fingerprints: a dataset file as `modiff data build` writes it", "[repro][cli]") {
  TempDir dir("file");
  const std::string file = (dir.path / "expert.hdf5").string();
  const auto r = modiff_test::modiff("data build bullet-walker2d-expert-v0 --transitions 3000 --num-envs 5 --threads 1 --out " + file);
  REQUIRE(r.code == 0);
  check_fingerprint("dataset files", "bullet-walker2d-expert-v0 --transitions 3000", datasets::sha256_file(file));
}

TEST_CASE("fingerprints: evaluation of a committed IDQL policy", "[repro]") {
  if (const std::string why = other_libtorch(); !why.empty()) MODIFF_SKIP(why);
  // tests/data/tiny-idql: `modiff train --algo idql` on 2,000 hopper-medium transitions, 300 steps, hidden 32.
  const std::string dir = std::string(MODIFF_TEST_DATA_DIR) + "/tiny-idql";
  const auto all = evaluate_returns(dir + "/diffusion", dir + "/guidance", 2, 0);
  CHECK(evaluate_returns(dir + "/diffusion", dir + "/guidance", 1, 1) == all);  // one env at a time
  CHECK(evaluate_returns(dir + "/diffusion", dir + "/guidance", 2, 3) == all);  // 3 envs per wave
  check_fingerprint("evaluation returns, seeds 0-1 x 2 episodes x 60 steps, 8 candidates", "tiny-idql", hex(all));
  const auto unguided = evaluate_returns(dir + "/diffusion", "none", 2, 0);
  check_fingerprint("evaluation returns, seeds 0-1 x 2 episodes x 60 steps, 8 candidates", "tiny-idql unguided",
                    hex(unguided));
}

TEST_CASE("fingerprints: CPU training runs give the same weights on 1 and 2 threads", "[repro]") {
  if (const std::string why = other_libtorch(); !why.empty()) MODIFF_SKIP(why);
  TempDir dir("train");
  const std::string data = (dir.path / "hopper-medium.hdf5").string();
  REQUIRE(modiff_test::modiff("data build bullet-hopper-medium-v0 --transitions 2000 --out " + data).code == 0);
  for (const std::string algo : {"idql", "dql", "cfg"}) {
    std::vector<double> first;
    for (int threads : {1, 2}) {
      tbb::global_control limit(tbb::global_control::max_allowed_parallelism, threads);
      agents::TrainOptions o = modiff_test::tiny_cpu_training(algo, (dir.path / (algo + std::to_string(threads))).string());
      o.schedule = "joint";
      const auto r = agents::train(data, o);
      const auto returns = evaluate_returns(r.diffusion_dir, r.guidance_dir, 2, 0);
      INFO(algo << " on " << threads << " threads");
      if (threads == 1) first = returns;
      else CHECK(returns == first);
      CHECK(metrics_without_times(r.metrics_csv) == metrics_without_times((dir.path / (algo + "1") / "metrics.csv").string()));
    }
    check_fingerprint("trained 30 steps on 2,000 hopper-medium transitions, then evaluated", algo, hex(first));
  }
}

TEST_CASE("CUDA: one seed and command train the same weights and evaluate the same returns", "[repro][cuda]") {
  if (modiff::resolve_device("auto").kind != modiff::DeviceKind::Cuda) {
    MODIFF_SKIP("no CUDA device here: this case runs on the GPU machines (docs/gpu.md)");
  }
  TempDir dir("cuda");
  const std::string data = (dir.path / "hopper-medium.hdf5").string();
  REQUIRE(modiff_test::modiff("data build bullet-hopper-medium-v0 --transitions 5000 --out " + data).code == 0);
  for (const std::string algo : {"idql", "dql", "cfg"}) {
    std::vector<std::string> weights, metrics;
    for (const std::string run : {"a", "b"}) {
      agents::TrainOptions o;
      o.algo = algo;
      o.schedule = "guidance-first";
      o.steps = 200;
      o.guidance_steps = 200;
      o.device = "cuda";
      o.quiet = true;
      o.out = (dir.path / (algo + run)).string();
      const auto r = agents::train(data, o);
      weights.push_back(datasets::sha256_file(r.diffusion_dir + "/weights.pt") +
                        datasets::sha256_file(r.guidance_dir + "/weights.pt"));
      metrics.push_back(metrics_without_times(r.metrics_csv));
    }
    INFO(algo);
    CHECK(weights[0] == weights[1]);
    CHECK(metrics[0] == metrics[1]);
    const std::string run = (dir.path / (algo + "a")).string();
    agents::InferenceOptions io;
    io.device = "cuda";
    std::vector<std::vector<double>> returns;
    for (int repeat = 0; repeat < 2; ++repeat) {
      auto policy = agents::InferencePolicy::load(run + "/diffusion", run + "/guidance", io);
      eval::EvalOptions opt;
      opt.seeds = {0, 1};
      opt.episodes = 3;
      opt.max_steps = 100;
      returns.push_back(returns_of(eval::evaluate(policy, eval::env_for_policy(policy, ""), opt)));
    }
    CHECK(returns[0] == returns[1]);
  }
}
