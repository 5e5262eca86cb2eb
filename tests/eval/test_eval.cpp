// The evaluator and its statistics: hand-computed values, bootstrap
// determinism, reproducibility across thread counts and batch compositions,
// pairing checks.
#include <tbb/global_control.h>

#include <catch2/catch.hpp>
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <sstream>
#include <nlohmann/json.hpp>

#include "cli_runner.h"
#include "tiny_training.h"
#include "modiff/agents/inference_policy.h"
#include "modiff/agents/train.h"
#include "modiff/common/remove_tree.h"
#include "modiff/common/rng.h"
#include "modiff/eval/evaluate.h"
#include "modiff/eval/evaluation.h"
#include "modiff/eval/statistics.h"
#include "modiff/torch/device.h"
#include "skip.h"

using namespace modiff;
namespace fs = std::filesystem;

TEST_CASE("statistics: quartiles, IQR, IQM, mean and std by hand", "[eval][stats]") {
  const auto even = eval::aggregate({4, 1, 3, 2});
  CHECK(even.median == Approx(2.5));
  CHECK(even.iqr == Approx(3.25 - 1.75));  // linear interpolation: Q1 at position 0.75, Q3 at 2.25
  CHECK(even.iqm == Approx(2.5));          // int(0.25 * 4) = 1 value dropped at each end
  CHECK(even.mean == Approx(2.5));
  CHECK(even.std == Approx(std::sqrt(5.0 / 3.0)));
  CHECK(even.min == 1);
  CHECK(even.max == 4);
  const auto odd = eval::aggregate({5, 1, 3});
  CHECK(odd.median == Approx(3));
  CHECK(odd.iqr == Approx(2));  // Q1 = 2, Q3 = 4
  CHECK(odd.iqm == Approx(3));  // int(0.75) = 0: nothing dropped
  const auto ties = eval::aggregate({2, 7, 2, 7, 2});
  CHECK(ties.median == Approx(2));
  CHECK(ties.iqr == Approx(5));
  CHECK(ties.iqm == Approx(11.0 / 3.0));
  CHECK(eval::aggregate({4}).std == 0);
  CHECK(eval::quantile({0, 10}, 0.3) == Approx(3));
  CHECK_THROWS(eval::aggregate({}));
}

TEST_CASE("statistics: probability of improvement and relative change", "[eval][stats]") {
  CHECK(eval::probability_of_improvement({{1, 2}}, {{1, 0}}) == Approx(3.5 / 4));
  CHECK(eval::probability_of_improvement({{1}, {0}}, {{0}, {1}}) == Approx(0.5));  // averaged over tasks
  CHECK(eval::relative_change(10, 5) == Approx(-0.5));
  CHECK(eval::relative_change(-4, -2) == Approx(0.5));
  CHECK(eval::relative_change(0, 0) == 0);
  CHECK_THROWS(eval::probability_of_improvement({{1}}, {{1}, {2}}));
}

TEST_CASE("statistics: the stratified bootstrap is reproducible and brackets the point", "[eval][stats]") {
  const std::vector<std::vector<double>> tasks = {{10, 12, 9, 30, 11}, {50, 55, 53}};
  const auto a = eval::aggregate_with_intervals(tasks, 2000, 7), b = eval::aggregate_with_intervals(tasks, 2000, 7);
  CHECK(a.median.lo == b.median.lo);
  CHECK(a.iqm.hi == b.iqm.hi);
  const auto c = eval::aggregate_with_intervals(tasks, 2000, 8);
  CHECK((a.mean.lo != c.mean.lo || a.mean.hi != c.mean.hi || a.iqm.lo != c.iqm.lo || a.iqm.hi != c.iqm.hi ||
         a.median.lo != c.median.lo || a.iqr.hi != c.iqr.hi));  // another seed, other replicates
  CHECK(a.point.count == 8);
  CHECK(a.point.median == Approx(eval::aggregate({10, 12, 9, 30, 11, 50, 55, 53}).median));
  for (const auto& [interval, point] : {std::pair{a.median, a.point.median}, {a.mean, a.point.mean}, {a.iqm, a.point.iqm}}) {
    CHECK(interval.lo <= point);
    CHECK(point <= interval.hi);
  }
  // Stratified: every replicate keeps 5 scores of the first task and 3 of the second, so the
  // mean never leaves [(5*9 + 3*50)/8, (5*30 + 3*55)/8].
  CHECK(a.mean.lo >= (5 * 9 + 3 * 50) / 8.0);
  CHECK(a.mean.hi <= (5 * 30 + 3 * 55) / 8.0);
}

namespace {

// The statistics again, written here from docs/statistics.md's definitions (not from eval/src/statistics.cpp).
double type7_quantile(std::vector<double> v, double q) {
  std::sort(v.begin(), v.end());
  const double h = (v.size() - 1) * q;
  const size_t below = static_cast<size_t>(h);
  return below + 1 < v.size() ? v[below] + (h - below) * (v[below + 1] - v[below]) : v[below];
}

double trimmed_mean(std::vector<double> v) {  // scipy.stats.trim_mean(v, 0.25)
  std::sort(v.begin(), v.end());
  const size_t cut = v.size() / 4;
  return std::accumulate(v.begin() + cut, v.end() - cut, 0.0) / (v.size() - 2 * cut);
}

// The limit, as replicates grow, of the q-quantile of a statistic's bootstrap replicates: the statistic's
// exact bootstrap distribution (every equally likely resample) read at q. Also returns how far q lies from
// the nearest step of that distribution's CDF (the margin sampling noise has).
std::pair<double, double> exact_bootstrap_quantile(std::vector<double> values_of_resamples, double q) {
  std::sort(values_of_resamples.begin(), values_of_resamples.end());
  const double n = values_of_resamples.size();
  double margin = 1;
  for (size_t i = 1; i < values_of_resamples.size(); ++i)
    if (values_of_resamples[i] != values_of_resamples[i - 1]) margin = std::min(margin, std::abs(i / n - q));
  return {values_of_resamples[static_cast<size_t>(q * n)], margin};
}

}  // namespace

TEST_CASE("statistics: the 95% stratified-bootstrap interval against every resample, enumerated", "[eval][stats]") {
  // Two tasks: {0, 1, 2, 3} and {10, 20}. A stratified resample redraws 4 scores from the first task and 2 from
  // the second: 4^4 x 2^2 = 1024 equally likely resamples, enumerated here.
  const std::vector<std::vector<double>> tasks = {{0, 1, 2, 3}, {10, 20}};
  std::vector<double> medians, iqrs, iqms, means;
  for (int code = 0; code < 1024; ++code) {
    std::vector<double> sample;
    for (int i = 0, rest = code; i < 6; ++i) {
      const auto& task = i < 4 ? tasks[0] : tasks[1];
      sample.push_back(task[rest % task.size()]);
      rest /= static_cast<int>(task.size());
    }
    medians.push_back(type7_quantile(sample, 0.5));
    iqrs.push_back(type7_quantile(sample, 0.75) - type7_quantile(sample, 0.25));
    iqms.push_back(trimmed_mean(sample));
    means.push_back(std::accumulate(sample.begin(), sample.end(), 0.0) / 6);
  }
  const auto r = eval::aggregate_with_intervals(tasks, 400000, 3);
  const std::pair<const char*, std::pair<eval::Interval, std::vector<double>*>> stats[] = {
      {"median", {r.median, &medians}}, {"iqr", {r.iqr, &iqrs}}, {"iqm", {r.iqm, &iqms}}, {"mean", {r.mean, &means}}};
  for (const auto& [name, pair] : stats) {
    INFO(name);
    const auto& [interval, exact] = pair;
    const auto [lo, lo_margin] = exact_bootstrap_quantile(*exact, 0.025);
    const auto [hi, hi_margin] = exact_bootstrap_quantile(*exact, 0.975);
    // 400,000 replicates put the sampled CDF within about 0.0005 of the exact one (4 sigma): a margin of 0.002
    // makes the comparison exact. A 50% interval, the replicates' range or 100 replicates would miss it.
    REQUIRE(lo_margin > 0.002);
    REQUIRE(hi_margin > 0.002);
    CHECK(interval.lo == Approx(lo).margin(1e-12));
    CHECK(interval.hi == Approx(hi).margin(1e-12));
    CHECK(lo < hi);
  }
  // The point statistics pool the tasks' own scores.
  CHECK(r.point.median == Approx(type7_quantile({0, 1, 2, 3, 10, 20}, 0.5)));
  CHECK(r.point.iqm == Approx(trimmed_mean({0, 1, 2, 3, 10, 20})));
}

TEST_CASE("statistics: probability of improvement averages per task, where pooling would differ", "[eval][stats]") {
  // Task A: X = {1} beats Y = {0}: 1. Task B: X = {0, 0, 0} never beats Y = {1}: 0. Per task: (1 + 0) / 2.
  // Pooled, X = {1, 0, 0, 0} against Y = {0, 1} would give (1 + 0.5 + 3 x 0.5) / 8 = 0.375.
  CHECK(eval::probability_of_improvement({{1}, {0, 0, 0}}, {{0}, {1}}) == Approx(0.5));
  // Direction: P(X > Y) + P(Y > X) = 1 with ties counted a half.
  CHECK(eval::probability_of_improvement({{0, 0, 0}}, {{1}}) == Approx(0));
  CHECK(eval::probability_of_improvement({{2, 1}}, {{1, 0}}) == Approx(0.875));
  CHECK(eval::probability_of_improvement({{1, 0}}, {{2, 1}}) == Approx(0.125));
}

TEST_CASE("compare: B against A, by hand", "[eval][stats][cli]") {
  const fs::path dir = fs::temp_directory_path() / ("modiff_compare_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  auto write_eval = [&](const std::string& name, std::vector<double> scores) {
    nlohmann::json per_seed = nlohmann::json::array();
    for (size_t i = 0; i < scores.size(); ++i) per_seed.push_back({{"seed", i}, {"mean_normalized_score", scores[i]}});
    const std::string path = (dir / name).string();
    std::ofstream(path) << nlohmann::json{{"env", "bullet-hopper-v0"}, {"per_seed", per_seed}}.dump();
    return path;
  };
  const std::string a = write_eval("a.json", {10, 20, 30}), b = write_eval("b.json", {20, 40, 60});
  // P(B > A) over the 9 pairs: 20 beats 10, ties 20 (a half), loses to 30; 40 and 60 beat all three: 7.5 / 9.
  // Medians 20 -> 40 and IQRs (type 7) 10 -> 20: both +100%.
  const auto ab = nlohmann::json::parse(modiff_test::modiff("compare " + a + " " + b + " --json").out);
  CHECK(ab.at("probability_b_better").get<double>() == Approx(7.5 / 9));
  CHECK(ab.at("median").at("a") == 20);
  CHECK(ab.at("median").at("b") == 40);
  CHECK(ab.at("median").at("relative_change").get<double>() == Approx(1.0));
  CHECK(ab.at("iqr").at("relative_change").get<double>() == Approx(1.0));
  const auto ba = nlohmann::json::parse(modiff_test::modiff("compare " + b + " " + a + " --json").out);
  CHECK(ba.at("probability_b_better").get<double>() == Approx(1.5 / 9));
  CHECK(ba.at("median").at("relative_change").get<double>() == Approx(-0.5));
  remove_tree(dir.string());
}

namespace {

struct TinyPolicies {
  fs::path dir;
  std::string hopper_diffusion, hopper_guidance, walker_guidance;
  TinyPolicies() {
    dir = fs::temp_directory_path() / ("modiff_eval_" + std::to_string(::getpid()));
    remove_tree(dir.string());
    fs::create_directories(dir);
    for (const std::string env : {"hopper", "walker2d"}) {
      const std::string data = (dir / (env + ".hdf5")).string();
      REQUIRE(modiff_test::modiff("data build bullet-" + env + "-random-v0 --transitions 2000 --num-envs 4 --out " + data).code == 0);
      const agents::TrainOptions o = modiff_test::tiny_cpu_training("idql", (dir / env).string());
      const auto r = agents::train(data, o);
      if (env == "hopper") {
        hopper_diffusion = r.diffusion_dir;
        hopper_guidance = r.guidance_dir;
      } else {
        walker_guidance = r.guidance_dir;
      }
    }
  }
  ~TinyPolicies() { remove_tree(dir.string()); }
};

std::vector<eval::EpisodeRecord> run(const TinyPolicies& p, std::vector<uint64_t> seeds, int max_envs, int threads) {
  tbb::global_control limit(tbb::global_control::max_allowed_parallelism, threads);
  agents::InferenceOptions io;
  io.device = "cpu";
  io.candidates = 8;
  auto policy = agents::InferencePolicy::load(p.hopper_diffusion, p.hopper_guidance, io);
  eval::EvalOptions opt;
  opt.seeds = seeds;
  opt.episodes = 3;
  opt.max_envs = max_envs;
  return eval::evaluate(policy, eval::env_for_policy(policy, ""), opt);
}

}  // namespace

TEST_CASE("evaluator: episodes depend on their seed alone, not on threads or batches", "[eval]") {
  TinyPolicies p;
  const auto all = run(p, {0, 1, 2}, 0, 2);
  REQUIRE(all.size() == 9);
  const auto narrow = run(p, {0, 1, 2}, 2, 1);
  const auto alone = run(p, {1}, 0, 2);
  for (size_t i = 0; i < all.size(); ++i) {
    CHECK(all[i].episode_return == narrow[i].episode_return);  // bitwise
    CHECK(all[i].length == narrow[i].length);
    CHECK(all[i].normalized_score == Approx(envs::normalized_score(envs::find_env("bullet-hopper-v0"), all[i].episode_return)));
  }
  for (int e = 0; e < 3; ++e) CHECK(alone[e].episode_return == all[3 + e].episode_return);
  // Episodes differ from each other (different env seeds and noise).
  CHECK(all[0].episode_return != all[1].episode_return);
  const auto means = eval::per_seed_means(all, {0, 1, 2});
  CHECK(means[1] == Approx((all[3].normalized_score + all[4].normalized_score + all[5].normalized_score) / 3));

  // A guidance of another env is refused with the reason.
  agents::InferenceOptions io;
  io.device = "cpu";
  CHECK_THROWS_WITH(agents::InferencePolicy::load(p.hopper_diffusion, p.walker_guidance, io),
                    Catch::Contains("env bullet-walker2d-v0"));

  // Through the CLI: JSON with every episode, per-seed means and intervals; swap matrices.
  const auto r = modiff_test::modiff("eval --diffusion " + p.hopper_diffusion + " --guidance " + p.hopper_guidance +
                                     " --seeds 0-1 --episodes 2 --candidates 4 --bootstrap-reps 500 --json");
  REQUIRE(r.code == 0);
  const auto j = nlohmann::json::parse(r.out);
  CHECK(j.at("episodes").size() == 4);
  CHECK(j.at("per_seed").size() == 2);
  for (const char* key : {"median", "iqr", "iqm", "mean"}) CHECK(j.at("aggregate").at("ci95").at(key).size() == 2);
  // Two evaluations compared: probability of improvement and relative changes.
  const std::string ja = (p.dir / "a.json").string(), jb = (p.dir / "b.json").string();
  REQUIRE(modiff_test::modiff("eval --diffusion " + p.hopper_diffusion + " --guidance none --seeds 0-2 --episodes 1"
                              " --bootstrap-reps 100 --json --out " + ja).code == 0);
  REQUIRE(modiff_test::modiff("eval --diffusion " + p.hopper_diffusion + " --guidance " + p.hopper_guidance +
                              " --candidates 4 --seeds 0-2 --episodes 1 --bootstrap-reps 100 --json --out " + jb).code == 0);
  const auto cmp = modiff_test::modiff("compare " + ja + " " + jb + " --json");
  REQUIRE(cmp.code == 0);
  const auto cj = nlohmann::json::parse(cmp.out);
  const double pb = cj.at("probability_b_better");
  CHECK((pb >= 0 && pb <= 1));
  CHECK(cj.at("iqr").contains("relative_change"));
  const auto same = nlohmann::json::parse(modiff_test::modiff("compare " + ja + " " + ja + " --json").out);
  CHECK(same.at("probability_b_better").get<double>() == Approx(0.5));
  CHECK(modiff_test::modiff("compare " + ja).code != 0);

  const auto s = modiff_test::modiff("swap --diffusion " + p.hopper_diffusion + " --guidance " + p.hopper_guidance +
                                     ",none --seeds 0 --episodes 1 --candidates 4 --bootstrap-reps 100 --json");
  INFO(s.err);
  REQUIRE(s.code == 0);
  CHECK(nlohmann::json::parse(s.out).at("cells").size() == 2);
  const auto bad = modiff_test::modiff("swap --diffusion " + p.hopper_diffusion + " --guidance " + p.walker_guidance +
                                       " --seeds 0 --episodes 1");
  CHECK(bad.code != 0);
  CHECK(modiff_test::lines(bad.err) == 1);
  CHECK(bad.err.find("walker2d") != std::string::npos);
  // Evaluation during training: guided and unguided scores in metrics.csv.
  const std::string run = (p.dir / "curve").string();
  REQUIRE(modiff_test::modiff("train --algo idql --dataset " + (p.dir / "hopper.hdf5").string() +
                              " --steps 40 --hidden 16 --block-width 32 --batch 32 --log-every 10 --eval-every 20"
                              " --eval-episodes 2 --device cpu --json --out " + run).code == 0);
  std::istringstream csv(modiff_test::slurp(run + "/metrics.csv"));
  std::string line;
  int evaluated = 0;
  std::getline(csv, line);
  CHECK(line.find("eval_guided,eval_unguided") != std::string::npos);
  while (std::getline(csv, line)) {
    std::vector<std::string> cells;
    std::stringstream ss(line);
    for (std::string c; std::getline(ss, c, ',');) cells.push_back(c);
    REQUIRE(cells.size() == 11);
    if (!cells[8].empty() && !cells[9].empty()) ++evaluated;
  }
  CHECK(evaluated == 2);  // steps 20 and 40
  CHECK_FALSE(fs::exists(run + "/eval_snapshot"));

  const auto seeds = modiff_test::modiff("eval --diffusion " + p.hopper_diffusion + " --seeds 3-1");
  CHECK(seeds.code != 0);
  CHECK(seeds.err.find("--seeds") != std::string::npos);
  const auto env = modiff_test::modiff("eval --diffusion " + p.hopper_diffusion + " --env bullet-ant-v0");
  CHECK(env.code != 0);
  CHECK(env.err.find("trained for bullet-hopper-v0") != std::string::npos);
}

TEST_CASE("evaluations side by side in one episode pool give each pairing the episodes it has alone", "[eval]") {
  TinyPolicies p;
  const std::string walker_diffusion = (p.dir / "walker2d" / "diffusion").string();
  const std::vector<eval::Pairing> pairings = {{p.hopper_diffusion, p.hopper_guidance},
                                               {walker_diffusion, "none"},
                                               {p.hopper_diffusion, "none"},
                                               {p.hopper_diffusion, p.hopper_guidance}};
  eval::EvalSettings s;
  s.seeds = {0, 1};
  s.episodes = 2;
  s.candidates = 4;
  s.device = "cpu";
  s.bootstrap_reps = 100;
  // Each policy in passes of its own, and the policies alike in stacked passes (on the CPU only when asked).
  for (auto [max_envs, stacking] : {std::pair{0, agents::PassStacking::Auto}, std::pair{3, agents::PassStacking::Auto},
                                    std::pair{0, agents::PassStacking::Always}, std::pair{3, agents::PassStacking::Always}}) {
    CAPTURE(max_envs, static_cast<int>(stacking));  // max_envs 3: slots shared by episodes of different policies
    s.max_envs = max_envs;
    s.stacking = stacking;
    const auto together = eval::evaluate_pairings(pairings, s);
    REQUIRE(together.size() == pairings.size());
    for (size_t i = 0; i < pairings.size(); ++i) {
      CAPTURE(i);
      const auto alone = eval::evaluate_pairing(pairings[i].diffusion, pairings[i].guidance, s);
      CHECK(together[i].json.at("episodes") == alone.json.at("episodes"));
      CHECK(together[i].json.at("env") == alone.json.at("env"));
      CHECK(together[i].json.at("env_steps") == alone.json.at("env_steps"));
      CHECK(together[i].per_seed == alone.per_seed);
    }
    CHECK(together[0].json.at("episodes") == together[3].json.at("episodes"));
    CHECK(together[0].json.at("episodes") != together[2].json.at("episodes"));  // guidance changes the episodes
  }
}

namespace {

// Observations of a hopper-shaped batch, made up, and one noise key per row.
std::pair<std::vector<float>, std::vector<uint64_t>> made_up_rows(int n, int obs_dim, uint64_t salt) {
  std::vector<float> obs(static_cast<size_t>(n) * obs_dim);
  for (size_t i = 0; i < obs.size(); ++i) obs[i] = static_cast<float>(std::sin(0.37 * i + salt));
  std::vector<uint64_t> keys(n);
  for (int r = 0; r < n; ++r) keys[r] = derive_seed(salt, static_cast<uint64_t>(r));
  return {obs, keys};
}

struct Acted {
  agents::InferencePolicy* policy;
  std::vector<float> obs;
  std::vector<uint64_t> keys;
  std::vector<double> actions;
};

// The policies' rows acted on in one step of shared passes.
void act_together(agents::SharedPasses& passes, std::vector<Acted*> acted) {
  std::vector<agents::SharedPasses::Request> requests;
  for (Acted* a : acted) {
    const int n = static_cast<int>(a->keys.size());
    a->actions.assign(static_cast<size_t>(n) * a->policy->diffusion().act_dim, 0.0);
    requests.push_back({a->policy, a->obs.data(), n, a->actions.data(), a->keys.data()});
  }
  passes.act(requests);
}

double largest_difference(const std::vector<double>& a, const std::vector<double>& b) {
  double d = 0;
  for (size_t i = 0; i < a.size(); ++i) d = std::max(d, std::abs(a[i] - b[i]));
  return d;
}

// SharedPasses on `device`: a chunk's actions beside other policies' chunks are those it gets alone, bit for bit;
// against the policy's own passes they differ by the products' rounding only (TF32 on CUDA: `tolerance`).
void check_stacked_passes(const std::string& device, double tolerance) {
  TinyPolicies p;
  const std::string data = (p.dir / "hopper.hdf5").string();
  // Each algorithm's sampler (IDQL's LN-ResNet with eps-clip, Diffusion-QL's MLP with the posterior, EDP's
  // DPM-Solver) and each selection rule, two training seeds of each.
  struct Case {
    std::string algo, select;
  };
  for (const Case& c : {Case{"idql", "argmax"}, Case{"idql", "expectile"}, Case{"dql", "softmax"}, Case{"edp", "argmax"}}) {
    CAPTURE(c.algo, c.select);
    std::vector<agents::TrainResult> trained;
    for (uint64_t seed : {0, 1}) {
      auto o = modiff_test::tiny_cpu_training(c.algo, (p.dir / (c.algo + c.select + std::to_string(seed))).string());
      o.steps = 20;
      o.seed = seed;
      trained.push_back(agents::train(data, o));
    }
    agents::InferenceOptions io;
    io.device = device;
    io.candidates = 5;
    io.select = c.select;
    io.chunk = 4;
    auto a = agents::InferencePolicy::load(trained[0].diffusion_dir, trained[0].guidance_dir, io);
    auto b = agents::InferencePolicy::load(trained[1].diffusion_dir, trained[1].guidance_dir, io);
    auto a_again = agents::InferencePolicy::load(trained[0].diffusion_dir, trained[0].guidance_dir, io);
    agents::InferenceOptions one_sample = io;
    one_sample.candidates = 0;
    one_sample.select.clear();
    auto unguided = agents::InferencePolicy::load(trained[0].diffusion_dir, "none", one_sample);
    const int obs_dim = a.diffusion().obs_dim;
    auto [obs_a, keys_a] = made_up_rows(7, obs_dim, 1);  // two chunks, the second padded
    auto [obs_b, keys_b] = made_up_rows(13, obs_dim, 2);
    agents::SharedPasses stacked(agents::PassStacking::Always);
    Acted alone{&a, obs_a, keys_a, {}};
    act_together(stacked, {&alone});
    CHECK(stacked.passes() == 1);
    // Beside other policies' chunks (another seed's weights, the same weights loaded again, an unguided one):
    // the same actions, to the bit.
    Acted with_a{&a, obs_a, keys_a, {}}, with_b{&b, obs_b, keys_b, {}}, with_again{&a_again, obs_b, keys_b, {}},
        with_unguided{&unguided, obs_a, keys_a, {}};
    act_together(stacked, {&with_b, &with_a, &with_again, &with_unguided});
    CHECK(with_a.actions == alone.actions);
    Acted b_alone{&b, obs_b, keys_b, {}};
    act_together(stacked, {&b_alone});
    CHECK(with_b.actions == b_alone.actions);
    CHECK(with_again.actions != with_b.actions);  // other weights, other actions
    // More chunks than a pass has slots: passes in turn, each chunk as alone.
    auto [obs_many, keys_many] = made_up_rows(4 * 40 + 3, obs_dim, 3);
    Acted many{&a, obs_many, keys_many, {}};
    const long before = stacked.passes();
    act_together(stacked, {&many});
    CHECK(stacked.passes() - before >= 2);
    Acted first_rows{&a, std::vector<float>(obs_many.begin(), obs_many.begin() + 4 * obs_dim),
                     std::vector<uint64_t>(keys_many.begin(), keys_many.begin() + 4), {}};
    act_together(stacked, {&first_rows});
    CHECK(std::vector<double>(many.actions.begin(), many.actions.begin() + 4 * 3) == first_rows.actions);

    // The same policy in its own passes: the same actions but for the products' rounding (another order of
    // additions), the unguided chain's and the guided selection's.
    std::vector<double> own(alone.actions.size()), own_unguided(alone.actions.size());
    a.act(obs_a.data(), 7, own.data(), keys_a.data());
    unguided.act(obs_a.data(), 7, own_unguided.data(), keys_a.data());
    CHECK(largest_difference(own_unguided, with_unguided.actions) < tolerance);
    // (TF32's rounding may flip a choice between two close candidates: the guided comparison on the CPU.)
    if (device == "cpu") CHECK(largest_difference(own, alone.actions) < tolerance);
    // Without stacking the evaluator's step is the policy's own passes, exactly.
    agents::SharedPasses own_passes(agents::PassStacking::Never);
    Acted by_default{&a, obs_a, keys_a, {}};
    act_together(own_passes, {&by_default});
    CHECK(by_default.actions == own);
    CHECK(own_passes.passes() == 0);
  }
}

}  // namespace

TEST_CASE("stacked passes: a chunk's actions depend on its policy and rows alone, as in the policy's own passes",
          "[eval][stacked]") {
  check_stacked_passes("cpu", 1e-4);
}

TEST_CASE("CUDA: stacked passes give a chunk the actions it has alone", "[eval][stacked][cuda]") {
  if (modiff::resolve_device("auto").kind != modiff::DeviceKind::Cuda) {
    MODIFF_SKIP("no CUDA device here: this case runs on the GPU machines (docs/gpu.md)");
  }
  check_stacked_passes("cuda", 1e-2);
  // The evaluator on CUDA (stacked by default): each pairing's episodes beside the others are those it has alone.
  TinyPolicies p;
  const std::vector<eval::Pairing> pairings = {{p.hopper_diffusion, p.hopper_guidance},
                                               {p.hopper_diffusion, "none"},
                                               {p.hopper_diffusion, p.hopper_guidance}};
  eval::EvalSettings s;
  s.seeds = {0, 1};
  s.episodes = 2;
  s.candidates = 4;
  s.device = "cuda";
  s.bootstrap_reps = 100;
  const auto together = eval::evaluate_pairings(pairings, s);
  for (size_t i = 0; i < pairings.size(); ++i) {
    CAPTURE(i);
    const auto alone = eval::evaluate_pairing(pairings[i].diffusion, pairings[i].guidance, s);
    CHECK(together[i].json.at("episodes") == alone.json.at("episodes"));
  }
  CHECK(together[0].json.at("episodes") == together[2].json.at("episodes"));
}
