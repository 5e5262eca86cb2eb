// Training guidance modules and diffusion policies: known answers on a 1-D
// bandit, every algorithm x schedule, artifacts, pairing rules, resume after
// kill -9, and bad input.
#include <signal.h>
#include <sys/types.h>

#include <catch2/catch.hpp>
#include <tuple>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "cli_runner.h"
#include "modiff/agents/artifact.h"
#include "modiff/agents/inference_policy.h"
#include "modiff/agents/train.h"
#include "modiff/common/error.h"
#include "modiff/common/remove_tree.h"
#include "modiff/common/rng.h"
#include "modiff/datasets/d4rl_dataset.h"
#include "modiff/torch/device.h"
#include "skip.h"

using namespace modiff;
namespace fs = std::filesystem;

namespace {

fs::path fresh_dir(const std::string& tag) {
  fs::path d = fs::temp_directory_path() / ("modiff_train_" + tag + "_" + std::to_string(::getpid()));
  remove_tree(d.string());
  return d;
}

// One state, one action dimension; the data's actions are two modes, -0.5
// (reward 0) and +0.5 (reward 1), each episode one step long.
datasets::Dataset bimodal_bandit(int rows, uint64_t seed) {
  datasets::Dataset d;
  d.obs_dim = 1;
  d.act_dim = 1;
  Rng rng(seed);
  for (int i = 0; i < rows; ++i) {
    const bool high = i % 2 == 0;
    d.observations.push_back(0.f);
    d.actions.push_back(static_cast<float>((high ? 0.5 : -0.5) + rng.uniform(-0.05, 0.05)));
    d.rewards.push_back(high ? 1.f : 0.f);
    d.terminals.push_back(1);
    d.timeouts.push_back(0);
  }
  return d;
}

agents::TrainOptions tiny(const std::string& algo, const std::string& schedule, const fs::path& out, long steps) {
  agents::TrainOptions o;
  o.algo = algo;
  o.schedule = schedule;
  o.steps = steps;
  o.out = out.string();
  o.device = "cpu";
  o.quiet = true;
  o.set = {"policy.hidden=32", "guidance.hidden=32", "policy.block_width=64", "batch=64"};
  o.log_every = 25;
  return o;
}

// Fractions of actions near each mode.
std::pair<double, double> mode_shares(const std::vector<double>& actions) {
  int low = 0, high = 0;
  for (double a : actions) {
    low += std::abs(a + 0.5) < 0.2;
    high += std::abs(a - 0.5) < 0.2;
  }
  return {double(low) / actions.size(), double(high) / actions.size()};
}

std::vector<double> act_many(agents::InferencePolicy& policy, int n) {
  std::vector<float> obs(n * policy.diffusion().obs_dim, 0.f);
  std::vector<double> actions(n * policy.diffusion().act_dim);
  policy.act(obs.data(), n, actions.data());
  return actions;
}

agents::DatasetRef bandit_ref() { return {"bandit", "bandit-data", ""}; }

}  // namespace

TEST_CASE("bandit: the diffusion reproduces both modes and guidance picks the high one", "[train][bandit]") {
  const auto data = bimodal_bandit(4000, 1);
  const fs::path out = fresh_dir("bandit");
  auto o = tiny("idql", "joint", out, 1500);
  o.set = {"policy.hidden=64", "guidance.hidden=64", "policy.block_width=128", "batch=256", "policy.lr=1e-3",
           "guidance.lr=1e-3",
           "policy.ema_rate=0.01",  // IDQL's 0.001 suits millions of steps, not 1500
           // T = 20: with IDQL's T = 5 the two modes come out as clear peaks but some
           // mass (about a quarter here) is smeared between them; 20 steps separate them.
           "policy.diffusion_steps=20"};
  const auto r = agents::train_on(data, bandit_ref(), o);

  agents::InferenceOptions io;
  io.device = "cpu";
  io.seed = 3;
  auto alone = agents::InferencePolicy::load(r.diffusion_dir, "none", io);
  const auto [low, high] = mode_shares(act_many(alone, 2000));
  CAPTURE(low, high);
  CHECK(low > 0.35);
  CHECK(high > 0.35);
  CHECK(low + high > 0.85);  // little mass between or beyond the modes

  io.candidates = 16;
  auto guided = agents::InferencePolicy::load(r.diffusion_dir, r.guidance_dir, io);
  const auto shares = mode_shares(act_many(guided, 500));
  CAPTURE(shares.first, shares.second);
  CHECK(shares.second > 0.95);

  // Softmax and expectile selection lean to the high mode too.
  io.select = "expectile";
  auto expectile = agents::InferencePolicy::load(r.diffusion_dir, r.guidance_dir, io);
  const auto leaning = mode_shares(act_many(expectile, 1000));
  CAPTURE(leaning.first, leaning.second);
  CHECK(leaning.second > 2 * leaning.first);
  remove_tree(out.string());
}

TEST_CASE("bandit: classifier-free reward guidance samples the high mode", "[train][bandit]") {
  const auto data = bimodal_bandit(4000, 2);
  const fs::path out = fresh_dir("cfg_bandit");
  auto o = tiny("cfg", "guidance-first", out, 1500);
  o.guidance_steps = 800;
  o.set = {"policy.hidden=64", "guidance.hidden=64", "policy.block_width=128", "batch=256", "policy.lr=1e-3",
           "guidance.lr=1e-3"};
  const auto r = agents::train_on(data, bandit_ref(), o);
  agents::InferenceOptions io;
  io.device = "cpu";
  auto alone = agents::InferencePolicy::load(r.diffusion_dir, "none", io);
  const auto [low, high] = mode_shares(act_many(alone, 1000));
  CAPTURE(low, high);
  CHECK(high > 0.8);  // the label alone steers the sampler, no candidates
  remove_tree(out.string());
}

namespace {

// The mean and the share above 0.25 of 1000 actions sampled without a guidance (no candidates) after 1500 joint
// steps of `algo` on the bimodal bandit, its improvement term's weight `weight` set to `value`.
std::pair<double, double> unguided_samples(const std::string& algo, const std::vector<std::string>& overrides) {
  const auto data = bimodal_bandit(4000, 7);
  const fs::path out = fresh_dir(algo + "_bandit");
  auto o = tiny(algo, "joint", out, 1500);
  o.set = {"policy.hidden=64", "guidance.hidden=64", "batch=256", "policy.lr=1e-3", "guidance.lr=1e-3"};
  o.set.insert(o.set.end(), overrides.begin(), overrides.end());
  agents::train_on(data, bandit_ref(), o);
  agents::InferenceOptions io;
  io.device = "cpu";
  io.seed = 5;
  auto alone = agents::InferencePolicy::load((out / "diffusion").string(), "none", io);
  const auto actions = act_many(alone, 1000);
  remove_tree(out.string());
  double mean = 0, high_side = 0;
  for (double a : actions) {
    mean += a / actions.size();
    high_side += (a > 0.25) / double(actions.size());
  }
  return {mean, high_side};
}

std::pair<double, double> unguided_samples(const std::string& algo, const std::string& weight, double value) {
  return unguided_samples(algo, {weight + "=" + std::to_string(value)});
}

}  // namespace

TEST_CASE("bandit: Diffusion-QL's Q-loss moves the policy itself to the rewarded side, behavior cloning alone does not",
          "[train][bandit]") {
  // The policy loss BC + eta * q_loss, sampled without a guidance (one sample, no candidates to choose from).
  // eta = 0 clones the data, symmetric about 0 (with T = 5 the last step's E[x0 | x1] blurs the two modes
  // into one spread: the closed-form optimal denoiser does the same); eta = 1 pulls the samples to the
  // rewarded mode's side through the gradient of Q along the sampled chain.
  const auto [cloned_mean, cloned_high] = unguided_samples("dql", "eta", 0.0);
  CAPTURE(cloned_mean, cloned_high);
  CHECK(std::abs(cloned_mean) < 0.1);
  CHECK(cloned_high < 0.4);
  const auto [improved_mean, improved_high] = unguided_samples("dql", "eta", 1.0);
  CAPTURE(improved_mean, improved_high);
  CHECK(improved_mean > 0.5);
  CHECK(improved_high > 0.85);
}

TEST_CASE("bandit: EDP's TD3 term on the one-step action estimate moves the policy to the rewarded side",
          "[train][bandit]") {
  // EDP's policy loss diff_coef BC + alpha q_loss with q_loss on a0_hat, the clean action estimated in one step
  // from the BC pass's noised data action (no sampled chain); samples through the ODE solver, no candidates.
  // alpha = 0 clones the data, symmetric about 0; alpha = 2 (EDP's) pulls the samples to the rewarded mode.
  // Measured: cloned mean -0.03 with 28% above 0.25; improved mean 0.54 with 79%.
  const auto [cloned_mean, cloned_high] = unguided_samples("edp", "alpha", 0.0);
  CAPTURE(cloned_mean, cloned_high);
  CHECK(std::abs(cloned_mean) < 0.1);
  CHECK(cloned_high < 0.4);
  const auto [improved_mean, improved_high] = unguided_samples("edp", "alpha", 2.0);
  CAPTURE(improved_mean, improved_high);
  CHECK(improved_mean > 0.4);
  CHECK(improved_high > 0.7);
}

TEST_CASE("bandit: EDP's CRR objective weighs the data's better actions up and moves the policy to them",
          "[train][bandit]") {
  // CRR's term: -(w log N(a; a0_hat, I)).mean() with w = min(exp(A / beta), 20), A the data action's advantage over
  // the mean Q of actions drawn around a0_hat. The bandit's rewards are 0 and 1, so at the official beta = 1 the
  // rewarded mode weighs only about e times the other (measured: mean 0.003, no move); at beta = 0.05 up to 20
  // times, so the one-step estimates, and the samples through the ODE solver, move to that side (measured: mean
  // 0.33, 60% above 0.25; beta 0.1: 0.27, 52%; against plain cloning, alpha 0 in the TD3 case above: mean -0.03,
  // 28% above 0.25).
  const auto [mean, high] = unguided_samples("edp", {"objective=crr", "crr_beta=0.05"});
  CAPTURE(mean, high);
  CHECK(mean > 0.2);
  CHECK(high > 0.45);
}

TEST_CASE("every algorithm trains on every schedule and writes both artifacts", "[train]") {
  const auto data = bimodal_bandit(600, 3);
  for (const std::string algo : {"idql", "dql", "cfg", "edp"}) {
    for (const std::string schedule : {"joint", "guidance-first"}) {
      DYNAMIC_SECTION(algo << " " << schedule) {
        const fs::path out = fresh_dir(algo + "_" + schedule);
        auto o = tiny(algo, schedule, out, 200);
        if (schedule == "guidance-first") o.guidance_steps = 100;
        const auto r = agents::train_on(data, bandit_ref(), o);
        const auto g = agents::read_artifact(r.guidance_dir, "guidance");
        const auto d = agents::read_artifact(r.diffusion_dir, "diffusion");
        CHECK(d.algorithm == algo);
        CHECK(g.algorithm == (algo == "dql" || algo == "edp" ? "twin-q" : "iql"));
        CHECK(d.schedule == schedule);
        CHECK(d.dataset_sha256 == "bandit-data");
        const auto manifest = nlohmann::json::parse(d.manifest_text);
        const auto& phases = manifest.at("training").at("phases");
        REQUIRE(phases.size() == (schedule == "joint" ? 1u : 2u));
        CHECK(phases.back().at("steps") == 200);
        CHECK(phases.back().at("peak_memory_bytes").get<long>() > 0);
        if (algo == "cfg") CHECK(manifest.at("labels").at("std").get<double>() > 0);
        // metrics.csv: a header and one row per 25 steps of every phase.
        std::ifstream csv(r.metrics_csv);
        std::string line;
        int rows = -1;
        while (std::getline(csv, line)) ++rows;
        CHECK(rows == (schedule == "joint" ? 8 : 12));
        // The policy acts with its own guidance.
        agents::InferenceOptions io;
        io.device = "cpu";
        auto policy = agents::InferencePolicy::load(r.diffusion_dir, r.guidance_dir, io);
        const auto actions = act_many(policy, 5);
        for (double a : actions) CHECK((a >= -1 && a <= 1));
        remove_tree(out.string());
      }
    }
  }
}

TEST_CASE("a frozen guidance trains another algorithm's diffusion and swaps across seeds", "[train]") {
  const auto data = bimodal_bandit(600, 4);
  const fs::path a = fresh_dir("swap_a"), b = fresh_dir("swap_b"), c = fresh_dir("swap_c");
  const auto ra = agents::train_on(data, bandit_ref(), tiny("idql", "joint", a, 100));
  auto ob = tiny("dql", "guidance-first", b, 100);
  ob.guidance_dir = ra.guidance_dir;  // IDQL's IQL guidance under a DQL policy
  ob.seed = 1;
  const auto rb = agents::train_on(data, bandit_ref(), ob);
  CHECK(rb.guidance_dir == ra.guidance_dir);
  CHECK_FALSE(fs::exists(b / "guidance"));
  const auto manifest = nlohmann::json::parse(agents::read_artifact(rb.diffusion_dir, "diffusion").manifest_text);
  CHECK(manifest.at("guidance").at("algorithm") == "iql");
  CHECK(manifest.at("schedule") == "guidance-from-dir");
  // Another seed's DQL guidance paired with the IDQL policy at inference.
  auto oc = tiny("dql", "joint", c, 100);
  oc.seed = 2;
  const auto rc = agents::train_on(data, bandit_ref(), oc);
  agents::InferenceOptions io;
  io.device = "cpu";
  std::vector<std::string> warnings;
  auto swapped = agents::InferencePolicy::load(ra.diffusion_dir, rc.guidance_dir, io, &warnings);
  CHECK(warnings.empty());
  CHECK(swapped.candidates() == 64);
  CHECK(act_many(swapped, 3).size() == 3);
  // expectile selection needs V: twin-q has none.
  io.select = "expectile";
  CHECK_THROWS_WITH(agents::InferencePolicy::load(ra.diffusion_dir, rc.guidance_dir, io),
                    Catch::Contains("needs a guidance with V(s)"));
  for (const auto& d : {a, b, c}) remove_tree(d.string());
}

TEST_CASE("EDP pairs and swaps with the other algorithms' guidance modules", "[train]") {
  const auto data = bimodal_bandit(600, 5);
  const fs::path a = fresh_dir("edp_swap_a"), b = fresh_dir("edp_swap_b"), c = fresh_dir("edp_swap_c");
  const auto idql = agents::train_on(data, bandit_ref(), tiny("idql", "joint", a, 50));
  auto under_iql = tiny("edp", "guidance-first", b, 50);
  under_iql.guidance_dir = idql.guidance_dir;  // IDQL's IQL guidance under an EDP policy
  const auto edp = agents::train_on(data, bandit_ref(), under_iql);
  const auto manifest = nlohmann::json::parse(agents::read_artifact(edp.diffusion_dir, "diffusion").manifest_text);
  CHECK(manifest.at("guidance").at("algorithm") == "iql");
  CHECK(manifest.at("hyperparameters").at("diffusion").at("sampler") == "dpm-solver");
  CHECK(manifest.at("hyperparameters").at("diffusion").at("solver_passes") == 15);
  const auto dql = agents::train_on(data, bandit_ref(), tiny("dql", "joint", c, 50));
  agents::InferenceOptions io;
  io.device = "cpu";
  for (const auto& [policy, guidance] : {std::pair{edp.diffusion_dir, dql.guidance_dir},
                                         std::pair{idql.diffusion_dir, edp.guidance_dir},
                                         std::pair{dql.diffusion_dir, idql.guidance_dir}}) {
    CAPTURE(policy, guidance);
    std::vector<std::string> warnings;
    auto swapped = agents::InferencePolicy::load(policy, guidance, io, &warnings);
    CHECK(warnings.empty());
    for (double x : act_many(swapped, 4)) CHECK((x >= -1 && x <= 1));
  }
  // The iql objective: advantage-weighted regression of the one-step estimate, with IQL's guidance (it needs V).
  const fs::path d = fresh_dir("edp_iql");
  auto weighted = tiny("edp", "joint", d, 50);
  weighted.guidance_kind = "iql";
  weighted.set.push_back("objective=iql");
  const auto awr = agents::train_on(data, bandit_ref(), weighted);
  CHECK(agents::read_artifact(awr.guidance_dir, "guidance").algorithm == "iql");
  auto policy = agents::InferencePolicy::load(awr.diffusion_dir, awr.guidance_dir, io);
  for (double x : act_many(policy, 4)) CHECK((x >= -1 && x <= 1));
  auto without_v = tiny("edp", "joint", fresh_dir("edp_iql_twin_q"), 10);
  without_v.set.push_back("objective=iql");
  CHECK_THROWS_WITH(agents::train_on(data, bandit_ref(), without_v),
                    Catch::Contains("edp's iql objective weighs actions by Q - V: it needs a guidance with V(s)"));
  remove_tree(d.string());
  // The crr objective needs only Q: under IDQL's guidance too, with binary weights.
  const fs::path e = fresh_dir("edp_crr");
  auto crr = tiny("edp", "guidance-first", e, 30);
  crr.guidance_dir = idql.guidance_dir;
  crr.set.insert(crr.set.end(), {"objective=crr", "crr_weight=binary", "crr_samples=4"});
  const auto crr_run = agents::train_on(data, bandit_ref(), crr);
  auto crr_policy = agents::InferencePolicy::load(crr_run.diffusion_dir, idql.guidance_dir, io);
  for (double x : act_many(crr_policy, 4)) CHECK((x >= -1 && x <= 1));
  remove_tree(e.string());
  // More solver passes than diffusion steps is refused, naming both.
  auto too_many = tiny("edp", "joint", fresh_dir("edp_passes"), 10);
  too_many.set.push_back("policy.solver_passes=200");
  CHECK_THROWS_WITH(agents::train_on(data, bandit_ref(), too_many),
                    "policy.solver_passes must be from 1 to policy.diffusion_steps (100), got 200");
  for (const auto& d : {a, b, c}) remove_tree(d.string());
}

namespace {
// The metrics rows without their last column (the step time).
std::string without_times(const std::string& csv) {
  std::string o;
  std::istringstream in(csv);
  for (std::string line; std::getline(in, line);) o += line.substr(0, line.rfind(',')) + "\n";
  return o;
}
}  // namespace

TEST_CASE("resume: every algorithm x schedule, stopped in every phase, ends bit for bit as the whole run",
          "[train][resume]") {
  const auto data = bimodal_bandit(400, 6);
  const fs::path frozen = fresh_dir("resume_frozen");
  const auto guidance = agents::train_on(data, bandit_ref(), tiny("idql", "joint", frozen, 25));
  struct Plan {
    std::string schedule, guidance_dir;
    std::vector<std::pair<std::string, long>> stops;  // (phase, phase step) of each stop, in order
  };
  const std::vector<Plan> plans = {
      {"joint", "", {{"joint", 25}, {"joint", 50}}},
      // In the guidance phase, at its end (the diffusion's step 0), in the diffusion phase.
      {"guidance-first", "", {{"guidance", 25}, {"diffusion", 0}, {"diffusion", 25}, {"diffusion", 50}}},
      {"guidance-first", guidance.guidance_dir, {{"diffusion", 25}, {"diffusion", 50}}},
  };
  for (const std::string algo : {"idql", "dql", "cfg", "edp"}) {
    for (const auto& plan : plans) {
      DYNAMIC_SECTION(algo << " " << plan.schedule << (plan.guidance_dir.empty() ? "" : " under a frozen guidance")) {
        auto options = [&](const fs::path& out) {
          auto o = tiny(algo, plan.schedule, out, 75);
          if (plan.schedule == "guidance-first" && plan.guidance_dir.empty()) o.guidance_steps = 50;
          o.guidance_dir = plan.guidance_dir;
          o.checkpoint_every = 1000;  // the stops write the only checkpoints
          o.seed = 3;
          return o;
        };
        const fs::path whole = fresh_dir("resume_whole"), cut = fresh_dir("resume_cut");
        const auto reference = agents::train_on(data, bandit_ref(), options(whole));
        REQUIRE_FALSE(reference.stopped);
        auto piece = options(cut);
        piece.stop_after = 20;  // rounded up to the next row: 25 steps per invocation
        std::vector<std::pair<std::string, long>> stops;
        for (int invocation = 0; invocation < 10; ++invocation) {
          const auto r = agents::train_on(data, bandit_ref(), piece);
          if (!r.stopped) break;
          stops.push_back({r.stopped_phase, r.stopped_phase_step});
          CHECK(fs::exists(cut / "checkpoint" / "state.json"));
          CHECK_FALSE(fs::exists(cut / "diffusion"));
          // The guidance artifact exists from the end of its phase on, never before.
          CHECK(fs::exists(cut / "guidance") == (plan.schedule == "guidance-first" && plan.guidance_dir.empty() &&
                                                  r.stopped_phase == "diffusion"));
          piece.resume = true;
        }
        CHECK(stops == plan.stops);
        CHECK_FALSE(fs::exists(cut / "checkpoint"));
        for (const std::string artifact : {"guidance", "diffusion"}) {
          if (artifact == "guidance" && !plan.guidance_dir.empty()) continue;
          INFO(artifact);
          CHECK(modiff_test::slurp((whole / artifact / "weights.pt").string()) ==
                modiff_test::slurp((cut / artifact / "weights.pt").string()));
        }
        CHECK(without_times(modiff_test::slurp((whole / "metrics.csv").string())) ==
              without_times(modiff_test::slurp((cut / "metrics.csv").string())));
        remove_tree(whole.string());
        remove_tree(cut.string());
      }
    }
  }
  remove_tree(frozen.string());
}

TEST_CASE("hyperparameter overrides (--set) reach the modules a run builds, and a resume with other values is refused naming one", "[train]") {
  const auto data = bimodal_bandit(400, 11);
  struct Case {
    const char* algo;
    std::vector<std::string> set;
    // (manifest, JSON pointer, value) that the overrides must have written
    std::vector<std::tuple<std::string, std::string, nlohmann::json>> expect;
  };
  const Case cases[] = {
      {"idql",
       {"policy.dropout=0.2", "policy.blocks=2", "policy.ema_every=3", "guidance.tau=0.01", "guidance.expectile=0.8"},
       {{"diffusion", "/hyperparameters/denoiser/dropout", 0.2},
        {"diffusion", "/hyperparameters/denoiser/blocks", 2},
        {"diffusion", "/hyperparameters/ema_every", 3},
        {"guidance", "/hyperparameters/tau", 0.01},
        {"guidance", "/hyperparameters/expectile", 0.8}}},
      {"dql",
       {"eta=0.25", "policy.time_dim=8", "policy.lr_cosine=false", "guidance.layers=2", "policy.select=argmax"},
       {{"diffusion", "/eta", 0.25},
        {"diffusion", "/hyperparameters/denoiser/time_dim", 8},
        {"diffusion", "/hyperparameters/optimizer/decay_steps", 0},
        {"diffusion", "/hyperparameters/select", "argmax"},
        {"guidance", "/hyperparameters/layers", 2}}},
      {"cfg",
       {"policy.guide_weight=2", "policy.cond_dropout=0.1", "policy.candidates=4", "guidance.scale_rewards=false"},
       {{"diffusion", "/hyperparameters/guide_weight", 2.0},
        {"diffusion", "/hyperparameters/cond_dropout", 0.1},
        {"diffusion", "/hyperparameters/candidates", 4},
        {"guidance", "/reward_scale", 1.0}}},
  };
  for (const auto& c : cases) {
    INFO(c.algo);
    const fs::path out = fresh_dir(std::string("set_") + c.algo);
    auto o = tiny(c.algo, "joint", out, 10);
    o.log_every = 5;
    o.set.insert(o.set.end(), c.set.begin(), c.set.end());
    agents::train_on(data, bandit_ref(), o);
    for (const auto& [module, pointer, value] : c.expect) {
      const auto manifest = nlohmann::json::parse(modiff_test::slurp((out / module / "manifest.json").string()));
      INFO(module << pointer);
      CHECK(manifest.at(nlohmann::json::json_pointer(pointer)) == value);
    }
    remove_tree(out.string());
  }
  // A run stopped part way resumes only with the hyperparameters it started with.
  const fs::path out = fresh_dir("set_resume");
  auto o = tiny("idql", "joint", out, 20);
  o.log_every = 5;
  o.stop_after = 5;
  REQUIRE(agents::train_on(data, bandit_ref(), o).stopped);
  o.stop_after = 0;
  o.resume = true;
  o.set.push_back("policy.lr=1e-3");
  CHECK_THROWS_WITH(agents::train_on(data, bandit_ref(), o),
                    Catch::Contains("--resume: hyperparameters > policy.lr differs from the checkpointed run (0.0003 "
                                    "there, 0.001 now)"));
  o.set.pop_back();
  CHECK_FALSE(agents::train_on(data, bandit_ref(), o).stopped);
  remove_tree(out.string());
}

TEST_CASE("pairing: other dims or env are refused, other data is a warning", "[train]") {
  agents::ArtifactInfo d, g;
  d.dir = "D";
  g.dir = "G";
  d.env_id = g.env_id = "bullet-hopper-v0";
  d.obs_dim = g.obs_dim = 15;
  d.act_dim = g.act_dim = 3;
  d.dataset_sha256 = g.dataset_sha256 = "x";
  CHECK(agents::check_pairing(d, g).empty());
  g.dataset_sha256 = "y";
  g.dataset_name = "bullet-hopper-expert-v0";
  CHECK(agents::check_pairing(d, g).size() == 1);
  g.env_id = "bullet-walker2d-v0";
  CHECK_THROWS_WITH(agents::check_pairing(d, g), Catch::Contains("env bullet-walker2d-v0"));
  g.env_id = d.env_id;
  g.act_dim = 6;
  CHECK_THROWS_WITH(agents::check_pairing(d, g), Catch::Contains("act 6"));
}

TEST_CASE("training runs refuse bad settings and keep existing runs", "[train]") {
  const auto data = bimodal_bandit(200, 5);
  const fs::path out = fresh_dir("bad");
  CHECK_THROWS_WITH(agents::train_on(data, bandit_ref(), tiny("sac", "joint", out, 10)), Catch::Contains("--algo"));
  CHECK_THROWS_WITH(agents::train_on(data, bandit_ref(), tiny("idql", "later", out, 10)), Catch::Contains("--schedule"));
  CHECK_THROWS_WITH(agents::train_on(data, bandit_ref(), tiny("idql", "joint", out, 0)), Catch::Contains("--steps"));
  auto resume = tiny("idql", "joint", out, 10);
  resume.resume = true;
  CHECK_THROWS_WITH(agents::train_on(data, bandit_ref(), resume), Catch::Contains("no checkpoint"));
  agents::train_on(data, bandit_ref(), tiny("idql", "joint", out, 10));
  const auto before = modiff_test::slurp((out / "diffusion" / "manifest.json").string());
  CHECK_THROWS_WITH(agents::train_on(data, bandit_ref(), tiny("idql", "joint", out, 10)),
                    Catch::Contains("is not empty (it holds diffusion"));
  CHECK_THROWS_WITH(agents::train_on(data, bandit_ref(), resume), Catch::Contains("already finished"));
  CHECK(modiff_test::slurp((out / "diffusion" / "manifest.json").string()) == before);
  // A diffusion artifact is not a guidance one.
  auto wrong = tiny("dql", "guidance-first", fresh_dir("bad2"), 10);
  wrong.guidance_dir = (out / "diffusion").string();
  CHECK_THROWS_WITH(agents::train_on(data, bandit_ref(), wrong), Catch::Contains("is a diffusion artifact"));
  // A non-finite loss stops training with one clear error and writes no artifact: rewards of 1e30, which
  // Diffusion-QL's critic does not rescale, square to infinity.
  auto blowup = tiny("dql", "joint", fresh_dir("nan"), 50);
  blowup.log_every = 5;
  auto huge = data;
  for (auto& r : huge.rewards) r = 1e30f;
  CHECK_THROWS_WITH(agents::train_on(huge, bandit_ref(), blowup), Catch::Contains("non-finite critic_loss"));
  CHECK_FALSE(fs::exists(fs::path(blowup.out) / "diffusion"));
  remove_tree(out.string());
  remove_tree(blowup.out);
}

TEST_CASE("cli: train resumes after kill -9 and ends with the same weights", "[train][cli]") {
  const fs::path dir = fresh_dir("resume");
  fs::create_directories(dir);
  const std::string data = (dir / "hopper.hdf5").string();
  REQUIRE(modiff_test::modiff("data build bullet-hopper-random-v0 --transitions 3000 --num-envs 4 --out " + data).code == 0);
  const std::string common = "train --algo dql --schedule guidance-first --dataset " + data +
                             " --steps 1500 --guidance-steps 300 --hidden 32 --batch 64 --log-every 20"
                             " --checkpoint-every 100 --device cpu --threads 1 --seed 7 --json --out ";
  REQUIRE(modiff_test::modiff(common + (dir / "whole").string()).code == 0);

  const fs::path cut = dir / "cut";
  const std::string pid_file = (dir / "pid").string();
  REQUIRE(std::system((std::string(MODIFF_BINARY) + " " + common + cut.string() + " >/dev/null 2>&1 & echo $! > " +
                       pid_file).c_str()) == 0);
  const pid_t pid = std::stoi(modiff_test::slurp(pid_file));
  // Kill it in the diffusion phase, after a checkpoint there.
  bool killed = false;
  for (int i = 0; i < 6000 && !killed; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    try {
      const auto state = nlohmann::json::parse(modiff_test::slurp((cut / "checkpoint" / "state.json").string()));
      if (state.at("phase_index") == 1 && state.at("phase_step").get<long>() >= 200) {
        ::kill(pid, SIGKILL);
        killed = true;
      }
    } catch (...) {
    }
  }
  REQUIRE(killed);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  CHECK_FALSE(fs::exists(cut / "diffusion"));
  // Resuming under other options is refused, naming the option, and leaves the checkpoint as it was.
  const std::string state_before = modiff_test::slurp((cut / "checkpoint" / "state.json").string());
  std::string other_seed = common;
  other_seed.replace(other_seed.find("--seed 7"), 8, "--seed 8");
  const auto changed = modiff_test::modiff(other_seed + cut.string() + " --resume");
  CHECK(changed.code == 1);
  CHECK(changed.err.find("--resume: seed differs from the checkpointed run") != std::string::npos);
  CHECK(modiff_test::slurp((cut / "checkpoint" / "state.json").string()) == state_before);
  const auto resumed = modiff_test::modiff(common + cut.string() + " --resume");
  INFO(resumed.err);
  REQUIRE(resumed.code == 0);
  CHECK(modiff_test::slurp((dir / "whole" / "metrics.csv").string()).size() > 0);

  // Same weights: the same seeded inference gives bit-identical actions.
  agents::InferenceOptions io;
  io.device = "cpu";
  io.seed = 11;
  std::vector<float> obs(4 * 15);
  for (size_t i = 0; i < obs.size(); ++i) obs[i] = std::sin(0.7 * i);
  std::vector<double> a(4 * 3), b(4 * 3);
  auto p = agents::InferencePolicy::load((dir / "whole" / "diffusion").string(), (dir / "whole" / "guidance").string(), io);
  auto q = agents::InferencePolicy::load((cut / "diffusion").string(), (cut / "guidance").string(), io);
  p.act(obs.data(), 4, a.data());
  q.act(obs.data(), 4, b.data());
  CHECK(a == b);
  // The metrics agree row for row except the timings.
  CHECK(without_times(modiff_test::slurp((dir / "whole" / "metrics.csv").string())) ==
        without_times(modiff_test::slurp((cut / "metrics.csv").string())));
  remove_tree(dir.string());
}

TEST_CASE("cli: train reports bad input in one line", "[train][cli]") {
  const auto missing = modiff_test::modiff("train --algo idql --dataset /nonexistent.hdf5 --steps 10");
  CHECK(missing.code != 0);
  CHECK(modiff_test::lines(missing.err) == 1);
  CHECK(missing.err.find("nonexistent") != std::string::npos);
  // An unknown algorithm is refused before anything is built or written: a suite name would otherwise build
  // its 1M-row dataset into the data home first (an empty one here, checked to stay empty).
  const fs::path home = fs::temp_directory_path() / ("modiff_bc_home_" + std::to_string(::getpid()));
  setenv("MODIFF_HOME", home.string().c_str(), 1);
  const auto refused = modiff_test::modiff("train --algo bc --dataset bullet-hopper-medium-v0 --steps 10 --out " +
                                           (home / "run").string());
  unsetenv("MODIFF_HOME");
  CHECK(refused.code == 2);
  CHECK(refused.err.find("--algo: 'bc' is not one of idql, dql, cfg") != std::string::npos);
  CHECK_FALSE(fs::exists(home));
  const auto joint_guidance =
      modiff_test::modiff("train --algo dql --dataset /nonexistent.hdf5 --steps 10 --guidance /tmp");
  CHECK(joint_guidance.code != 0);
  const auto steps = modiff_test::modiff("train --algo idql --dataset x --steps abc");
  CHECK(steps.code != 0);
  CHECK(modiff_test::lines(steps.err) == 1);
}

TEST_CASE("cli: bench train times each algorithm x schedule in a process of its own", "[train][cli]") {
  const auto r = modiff_test::modiff("bench train --device cpu --steps 4 --algos idql --schedules joint,guidance-first --json");
  REQUIRE(r.code == 0);
  const auto results = nlohmann::json::parse(r.out).at("results");
  REQUIRE(results.size() == 3);  // joint; guidance, then diffusion
  std::vector<std::string> phases;
  for (const auto& c : results) {
    phases.push_back(c.at("phase"));
    CHECK(c.at("steps_per_s").get<double>() > 0);
    CHECK(c.at("peak_memory_bytes").get<long>() > 0);
    CHECK(c.at("batch").get<int>() == 512);
  }
  CHECK(phases == std::vector<std::string>{"joint", "guidance", "diffusion"});
  const auto bad = modiff_test::modiff("bench train --device cpu --steps 4 --algos idql,nope --schedules joint");
  CHECK(bad.code == 2);  // checked before any run starts
  CHECK(bad.err.find("--algos: 'nope' is not one of idql, dql, cfg") != std::string::npos);
}

namespace {

// A folder with a small hopper dataset, and the start of a `modiff train` command line on it (IDQL, `steps`
// CPU steps of small networks) that ends in "--out ".
struct SmallTraining {
  fs::path dir;
  std::string data, command;
  SmallTraining(const std::string& tag, int steps) : dir(fresh_dir(tag)), data((dir / "hopper.hdf5").string()) {
    fs::create_directories(dir);
    REQUIRE(modiff_test::modiff("data build bullet-hopper-random-v0 --transitions 2000 --num-envs 4 --out " + data).code == 0);
    command = "train --algo idql --dataset " + data + " --steps " + std::to_string(steps) +
              " --hidden 16 --block-width 32 --batch 32 --device cpu --log-every 10 --out ";
  }
  ~SmallTraining() { remove_tree(dir.string()); }
};

}  // namespace

TEST_CASE("cli: --normalize-obs standardizes with the dataset's statistics and the policy evaluates", "[train][cli]") {
  const SmallTraining t("normalize", 20);
  const fs::path& dir = t.dir;
  const std::string& data = t.data;
  const std::string& common = t.command;
  REQUIRE(modiff_test::modiff(common + (dir / "plain").string()).code == 0);
  REQUIRE(modiff_test::modiff(common + (dir / "normalized").string() + " --normalize-obs").code == 0);
  // Each observation column's mean and standard deviation over the file, computed here.
  const auto d = datasets::read_d4rl_file(data);
  const size_t n = d.size();
  for (const char* module : {"guidance", "diffusion"}) {
    INFO(module);
    const auto plain = nlohmann::json::parse(modiff_test::slurp((dir / "plain" / module / "manifest.json").string()));
    const auto norm = nlohmann::json::parse(modiff_test::slurp((dir / "normalized" / module / "manifest.json").string()));
    const auto mean = norm.at("observation_normalization").at("mean").get<std::vector<double>>();
    const auto std = norm.at("observation_normalization").at("std").get<std::vector<double>>();
    REQUIRE(static_cast<int>(mean.size()) == d.obs_dim);
    for (int k = 0; k < d.obs_dim; ++k) {
      double sum = 0, sq = 0;
      for (size_t i = 0; i < n; ++i) sum += d.observations[i * d.obs_dim + k];
      const double m = sum / n;
      for (size_t i = 0; i < n; ++i) sq += std::pow(d.observations[i * d.obs_dim + k] - m, 2);
      const double s = std::max(std::sqrt(sq / n), 1e-3);
      // The trainer uses the rows that have a next observation (all but a few episode ends): close, not equal.
      CHECK(mean[k] == Approx(m).margin(0.05 * s + 1e-4));
      CHECK(std[k] == Approx(s).epsilon(0.05).margin(1e-3));
      CHECK(plain.at("observation_normalization").at("mean")[k] == 0.0);
      CHECK(plain.at("observation_normalization").at("std")[k] == 1.0);
    }
  }
  const auto evaluated = modiff_test::modiff("eval --diffusion " + (dir / "normalized" / "diffusion").string() +
                                             " --guidance " + (dir / "normalized" / "guidance").string() +
                                             " --seeds 0 --episodes 1 --device cpu --json");
  CHECK(evaluated.code == 0);
}

TEST_CASE("cli: evaluation during training leaves the training bit for bit as it was", "[train][cli]") {
  const SmallTraining t("eval_during", 30);
  const fs::path& dir = t.dir;
  const std::string& common = t.command;
  REQUIRE(modiff_test::modiff(common + (dir / "plain").string()).code == 0);
  const auto with_eval = modiff_test::modiff(common + (dir / "evaluated").string() + " --eval-every 10 --eval-episodes 1");
  INFO(with_eval.err);
  REQUIRE(with_eval.code == 0);
  for (const char* module : {"guidance", "diffusion"}) {
    INFO(module);
    CHECK(modiff_test::slurp((dir / "plain" / module / "weights.pt").string()) ==
          modiff_test::slurp((dir / "evaluated" / module / "weights.pt").string()));
  }
  // The evaluated run's metrics hold scores; its losses are the plain run's.
  const auto metrics = modiff_test::slurp((dir / "evaluated" / "metrics.csv").string());
  CHECK(metrics.find("nan") == std::string::npos);
}

TEST_CASE("cli: --stop-after checkpoints, says how to continue, and --resume finishes the same run", "[train][cli]") {
  const SmallTraining t("stop_after", 30);
  const fs::path& dir = t.dir;
  REQUIRE(modiff_test::modiff(t.command + (dir / "whole").string()).code == 0);
  const std::string cut = (dir / "cut").string();
  const auto stopped = modiff_test::modiff(t.command + cut + " --stop-after 10");
  INFO(stopped.err);
  REQUIRE(stopped.code == 0);
  CHECK(stopped.out == "stopped in the joint phase at step 10: continue with --resume --out " + cut + "\n");
  CHECK(fs::exists(dir / "cut" / "checkpoint" / "state.json"));
  const auto json = modiff_test::modiff(t.command + cut + " --resume --stop-after 10 --json");
  REQUIRE(json.code == 0);
  const auto result = nlohmann::json::parse(json.out);
  CHECK(result.at("stopped") == true);
  CHECK(result.at("phase_step") == 20);
  REQUIRE(modiff_test::modiff(t.command + cut + " --resume").code == 0);
  for (const char* module : {"guidance", "diffusion"}) {
    INFO(module);
    CHECK(modiff_test::slurp((dir / "whole" / module / "weights.pt").string()) ==
          modiff_test::slurp((dir / "cut" / module / "weights.pt").string()));
  }
  const auto zero = modiff_test::modiff(t.command + (dir / "zero").string() + " --stop-after 0");
  CHECK(zero.code == 2);
  CHECK(zero.err.find("--stop-after") != std::string::npos);
  CHECK_FALSE(fs::exists(dir / "zero"));
}

namespace {

// metrics.csv's numbers by row: every column but the phase name and the time per step (empty cells: NaN).
std::vector<std::vector<double>> metrics_numbers(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  std::getline(in, line);
  std::vector<std::vector<double>> rows;
  while (std::getline(in, line)) {
    std::vector<std::string> cells;
    std::stringstream ss(line);
    for (std::string c; std::getline(ss, c, ',');) cells.push_back(c);
    if (!line.empty() && line.back() == ',') cells.push_back("");
    std::vector<double> row;
    for (size_t i = 0; i + 1 < cells.size(); ++i)
      if (i != 1) row.push_back(cells[i].empty() ? std::nan("") : std::stod(cells[i]));
    rows.push_back(row);
  }
  return rows;
}

}  // namespace

TEST_CASE("the reference implementation trains every algorithm, its losses those of the fast one", "[train]") {
  // On the CPU both draw their random numbers in the same order (the same steps t, noise, dropout masks,
  // chains), so the two runs differ only by rounding: their logged losses agree closely.
  const auto data = bimodal_bandit(600, 3);
  for (const std::string algo : {"idql", "dql", "cfg"}) {
    for (const std::string schedule : {"joint", "guidance-first"}) {
      DYNAMIC_SECTION(algo << " " << schedule) {
        std::vector<std::vector<double>> logged[2];
        int k = 0;
        for (const std::string implementation : {"reference", "fast"}) {
          const fs::path out = fresh_dir(algo + "_" + schedule + "_" + implementation);
          auto o = tiny(algo, schedule, out, 50);
          if (schedule == "guidance-first") o.guidance_steps = 50;
          o.implementation = implementation;
          const auto r = agents::train_on(data, bandit_ref(), o);
          logged[k++] = metrics_numbers(r.metrics_csv);
          // The reference run's artifacts load and act (on the fast implementation).
          agents::InferenceOptions io;
          io.device = "cpu";
          auto policy = agents::InferencePolicy::load(r.diffusion_dir, r.guidance_dir, io);
          for (double a : act_many(policy, 3)) CHECK((a >= -1 && a <= 1));
          remove_tree(out.string());
        }
        REQUIRE(logged[0].size() == logged[1].size());
        REQUIRE(logged[0].size() == (schedule == "joint" ? 2u : 4u));
        for (size_t row = 0; row < logged[0].size(); ++row) {
          REQUIRE(logged[0][row].size() == logged[1][row].size());
          for (size_t c = 0; c < logged[0][row].size(); ++c) {
            const double a = logged[0][row][c], b = logged[1][row][c];
            CAPTURE(row, c, a, b);
            if (std::isnan(a) || std::isnan(b)) {
              CHECK(std::isnan(a) == std::isnan(b));
            } else {
              CHECK(std::abs(a - b) <= 1e-3 * std::max(1.0, std::abs(b)));
            }
          }
        }
      }
    }
  }
}

TEST_CASE("an unknown implementation is refused", "[train]") {
  const auto data = bimodal_bandit(100, 3);
  const fs::path out = fresh_dir("bad_implementation");
  auto o = tiny("idql", "joint", out, 10);
  o.implementation = "quick";
  CHECK_THROWS_WITH(agents::train_on(data, bandit_ref(), o), Catch::Contains("unknown implementation 'quick'"));
  CHECK_FALSE(fs::exists(out));
}

namespace {

// A run's outcome as it must not depend on what trained beside it: the weights and the metrics without timings.
std::string run_fingerprint(const fs::path& out, bool own_guidance) {
  std::string s = modiff_test::slurp((out / "diffusion" / "weights.pt").string());
  if (own_guidance) s += modiff_test::slurp((out / "guidance" / "weights.pt").string());
  return s + without_times(modiff_test::slurp((out / "metrics.csv").string()));
}

}  // namespace

TEST_CASE("a run trained in a group is bit for bit the run trained alone, whatever trains beside it",
          "[train][group]") {
  const auto data_a = bimodal_bandit(600, 1), data_b = bimodal_bandit(500, 7);
  for (const std::string schedule : {"joint", "guidance-first"}) {
    DYNAMIC_SECTION(schedule) {
      // Every algorithm, two seeds on one dataset (sharing its device copy) and one run on another.
      struct Member {
        std::string algo;
        uint64_t seed;
        const datasets::Dataset* data;
      };
      std::vector<Member> plan;
      for (const std::string algo : {"idql", "dql", "cfg"})
        for (uint64_t seed : {0, 1}) plan.push_back({algo, seed, &data_a});
      plan.push_back({"idql", 0, &data_b});
      const fs::path alone = fresh_dir("group_alone"), together = fresh_dir("group_together");
      auto options = [&](const Member& m, const fs::path& root, size_t i) {
        auto o = tiny(m.algo, schedule, root / std::to_string(i), 30);
        if (schedule == "guidance-first") o.guidance_steps = 20;
        o.log_every = 10;
        o.seed = m.seed;
        return o;
      };
      std::vector<agents::GroupMember> members;
      for (size_t i = 0; i < plan.size(); ++i) {
        agents::train_on(*plan[i].data, bandit_ref(), options(plan[i], alone, i));
        members.push_back({plan[i].data, bandit_ref(), options(plan[i], together, i)});
      }
      const auto results = agents::train_group_on(members);
      REQUIRE(results.size() == plan.size());
      for (size_t i = 0; i < plan.size(); ++i) {
        CAPTURE(i, plan[i].algo, plan[i].seed);
        CHECK(results[i].error.empty());
        CHECK(results[i].result.phases.front().runs_in_process == static_cast<int>(plan.size()));
        CHECK(run_fingerprint(alone / std::to_string(i), true) == run_fingerprint(together / std::to_string(i), true));
      }
      // Two seeds are two runs, not one run written twice.
      CHECK(run_fingerprint(together / "0", true) != run_fingerprint(together / "1", true));
      remove_tree(alone.string());
      remove_tree(together.string());
    }
  }
}

TEST_CASE("a group's runs stop and resume as runs alone do, and one that cannot start leaves the others training",
          "[train][group]") {
  const auto data = bimodal_bandit(400, 3);
  const fs::path root = fresh_dir("group_resume");
  auto options = [&](const std::string& name, uint64_t seed) {
    auto o = tiny("idql", "guidance-first", root / name, 40);
    o.guidance_steps = 30;
    o.log_every = 10;
    o.checkpoint_every = 1000;
    o.seed = seed;
    return o;
  };
  for (uint64_t seed : {0, 1}) agents::train_on(data, bandit_ref(), options("whole" + std::to_string(seed), seed));
  fs::create_directories(root / "busy");
  { std::ofstream(root / "busy" / "notes.txt") << "a user's file\n"; }
  std::vector<agents::GroupMember> members;
  for (uint64_t seed : {0, 1}) {
    auto o = options("cut" + std::to_string(seed), seed);
    o.stop_after = 25;  // rounded up to the next row: 30 steps per invocation, the guidance phase's end
    members.push_back({&data, bandit_ref(), o});
  }
  members.push_back({&data, bandit_ref(), options("busy", 2)});
  int invocations = 0;
  for (bool stopped = true; stopped && invocations < 5; ++invocations) {
    const auto results = agents::train_group_on(members);
    CHECK_THAT(results[2].error, Catch::Contains("is not empty"));
    CHECK(results[0].error.empty());
    CHECK(results[1].error.empty());
    stopped = results[0].result.stopped;
    CHECK(results[1].result.stopped == stopped);
    for (auto& m : members) m.options.resume = true;
    members[2].options.resume = false;
  }
  CHECK(invocations == 3);  // 30 + 30 + the last 10 steps
  for (const std::string seed : {"0", "1"})
    CHECK(run_fingerprint(root / ("whole" + seed), true) == run_fingerprint(root / ("cut" + seed), true));
  CHECK(modiff_test::slurp((root / "busy" / "notes.txt").string()) == "a user's file\n");
  remove_tree(root.string());
}

namespace {

// metrics.csv's numeric cells per row (step, phase and timing left out).
std::vector<std::vector<double>> metric_values(const fs::path& csv) {
  std::vector<std::vector<double>> rows;
  std::stringstream lines(modiff_test::slurp(csv.string()));
  std::string line;
  std::getline(lines, line);  // header
  while (std::getline(lines, line)) {
    std::vector<std::string> cells;
    std::stringstream ss(line);
    for (std::string c; std::getline(ss, c, ',');) cells.push_back(c);
    std::vector<double> values;
    for (size_t i = 2; i + 1 < cells.size(); ++i) values.push_back(cells[i].empty() ? 0.0 : std::stod(cells[i]));
    rows.push_back(values);
  }
  return rows;
}

}  // namespace

// On CUDA a group's runs are stacked where their phase has stacked steps (one network of stacked weights for all
// four, algos/stacked_steps.h): every algorithm's guidance phase, IDQL's, Diffusion-QL's and EDP's joint and
// diffusion phases. Their products add in another order than a run's own kernels, so they agree with the runs alone to a
// tolerance; the other phases' runs take their own steps, the kernels of the run alone.
TEST_CASE("CUDA: a run trained in a group agrees with the run trained alone at every logged step", "[group][cuda]") {
  if (resolve_device("auto").kind != DeviceKind::Cuda) {
    MODIFF_SKIP("no CUDA device here: this case runs on the GPU machines (docs/gpu.md)");
  }
  const auto data = bimodal_bandit(2000, 4);
  // Stacks of four (by default groups of fewer than 8 runs alike are not stacked: docs/gpu.md).
  setenv("MODIFF_STACK_SIZE", "4", 1);
  for (const std::string algo : {"idql", "dql", "cfg", "edp"}) {
    for (const std::string schedule : {"guidance-first", "joint"}) {
      const fs::path alone = fresh_dir("cuda_group_alone"), together = fresh_dir("cuda_group_together");
      auto options = [&](const fs::path& root, uint64_t seed) {
        auto o = tiny(algo, schedule, root / std::to_string(seed), 300);
        if (schedule != "joint") o.guidance_steps = 100;
        // One run with optimizers of its own numbers: it still stacks (each run steps its own optimizer).
        if (seed == 3) o.set.insert(o.set.end(), {"policy.max_grad_norm=0.5", "guidance.lr=1e-3", "policy.lr=1e-4"});
        o.device = "cuda";
        o.log_every = 20;
        o.seed = seed;
        return o;
      };
      std::vector<agents::GroupMember> members;
      for (uint64_t seed = 0; seed < 4; ++seed) {
        agents::train_on(data, bandit_ref(), options(alone, seed));
        members.push_back({&data, bandit_ref(), options(together, seed)});
      }
      const auto results = agents::train_group_on(members);
      const bool policy_stacked = algo != "cfg";
      for (uint64_t seed = 0; seed < 4; ++seed) {
        CAPTURE(algo, schedule, seed);
        REQUIRE(results[seed].error.empty());
        bool any_stacked = false;
        for (const auto& phase : results[seed].result.phases) {
          const bool stacked = phase.name == "guidance" || policy_stacked;
          CHECK(phase.stacked_runs == (stacked ? 4 : 1));
          any_stacked = any_stacked || stacked;
        }
        const auto a = metric_values(alone / std::to_string(seed) / "metrics.csv");
        const auto b = metric_values(together / std::to_string(seed) / "metrics.csv");
        REQUIRE(a.size() == b.size());
        REQUIRE(a.size() == (schedule == "joint" ? 15u : 20u));  // guidance-first: 5 guidance rows, 15 diffusion rows
        double worst = 0;
        for (size_t r = 0; r < a.size(); ++r)
          for (size_t c = 0; c < a[r].size(); ++c)
            worst = std::max(worst, std::abs(a[r][c] - b[r][c]) / (1.0 + std::abs(a[r][c])));
        CAPTURE(worst);
        CHECK(worst < (any_stacked ? 1e-2 : 1e-4));
        WARN(algo << " " << schedule << " seed " << seed
                  << ": largest relative difference of a logged metric, group against alone: " << worst);
      }
      remove_tree(alone.string());
      remove_tree(together.string());
    }
  }
  unsetenv("MODIFF_STACK_SIZE");
}

TEST_CASE("cli: train --seeds trains one run per seed together, each the run --seed trains alone", "[train][group][cli]") {
  const fs::path dir = fresh_dir("seeds");
  fs::create_directories(dir);
  const std::string data = (dir / "hopper.hdf5").string();
  REQUIRE(modiff_test::modiff("data build bullet-hopper-random-v0 --transitions 2000 --num-envs 4 --out " + data).code == 0);
  const std::string common = "train --algo idql --dataset " + data +
                             " --steps 30 --hidden 32 --batch 64 --log-every 10 --device cpu --threads 1 ";
  const auto group = modiff_test::modiff(common + "--seeds 0-2 --json --out " + (dir / "group").string());
  INFO(group.err);
  REQUIRE(group.code == 0);
  const auto runs = nlohmann::json::parse(group.out).at("runs");
  REQUIRE(runs.size() == 3);
  CHECK(runs[1].at("seed") == 1);
  CHECK(runs[1].at("phases").at(0).at("runs_in_process") == 3);
  REQUIRE(modiff_test::modiff(common + "--seed 1 --json --out " + (dir / "alone").string()).code == 0);
  CHECK(run_fingerprint(dir / "alone", true) == run_fingerprint(dir / "group" / "seed_1", true));
  // Again into the same folder: every run is refused (not empty), each named, one error line at the end, exit 1.
  const auto again = modiff_test::modiff(common + "--seeds 0-2 --out " + (dir / "group").string());
  CHECK(again.code == 1);
  CHECK(again.out.find("seed 2 (" + (dir / "group" / "seed_2").string() + "): ") != std::string::npos);
  CHECK(modiff_test::lines(again.err) == 1);
  CHECK(again.err.find("3 of 3 runs failed") != std::string::npos);
  CHECK(run_fingerprint(dir / "alone", true) == run_fingerprint(dir / "group" / "seed_1", true));  // untouched
  for (const std::string bad : {"--seeds 2-1", "--seeds 0,0", "--seeds x", "--seeds 0-2 --seed 3"}) {
    INFO(bad);
    const auto r = modiff_test::modiff(common + bad + " --out " + (dir / "bad").string());
    CHECK(r.code == 2);
    CHECK(modiff_test::lines(r.err) == 1);
  }
  CHECK_FALSE(fs::exists(dir / "bad"));
  remove_tree(dir.string());
}
