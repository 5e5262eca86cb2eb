// The suite's committed fingerprints, `modiff data suite` and the verdict `modiff data info` prints.
#include "suite_fingerprints.h"

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>

#include "commands.h"
#include "json_output.h"
#include "modiff/behavior/behavior_suite.h"
#include "modiff/bench/bench.h"
#include "modiff/common/atomic_file.h"
#include "modiff/common/error.h"
#include "modiff/datasets/data_home.h"
#include "modiff/datasets/sha256.h"

namespace modiff::cli {
namespace fs = std::filesystem;

DatasetFacts dataset_facts(const std::string& path) {
  const auto d = datasets::read_d4rl_file(path);
  const auto episodes = datasets::summarize_episodes(d);
  const envs::EnvSpec* env = d.attributes.env_id.empty() ? datasets::env_for_dims(d.obs_dim, d.act_dim)
                                                         : &envs::find_env(d.attributes.env_id);
  std::vector<double> normalized;
  for (double r : episodes.returns) normalized.push_back(env ? envs::normalized_score(*env, r) : 0.0);
  DatasetFacts f;
  f.name = d.attributes.name.empty() ? fs::path(path).stem().string() : d.attributes.name;
  f.path = path;
  f.sha256 = datasets::sha256_file(path);
  f.env_id = env ? env->id : "";
  f.seed = d.attributes.seed;
  f.bytes = fs::file_size(path);
  f.transitions = d.size();
  f.episodes = episodes.returns.size();
  f.unfinished_rows = episodes.unfinished_rows;
  f.returns = summarize(episodes.returns);
  f.normalized = summarize(normalized);
  return f;
}

std::string suite_fingerprints_path() { return behavior::assets_dir() + "/datasets/suite-fingerprints.json"; }

nlohmann::json read_suite_fingerprints() {
  const std::string path = suite_fingerprints_path();
  std::ifstream in(path);
  if (!in) return nlohmann::json::object();
  try {
    const auto j = nlohmann::json::parse(in);
    if (!j.contains("datasets") || !j["datasets"].is_object()) throw Error("no 'datasets' object");
    return j["datasets"];
  } catch (const std::exception& e) {
    throw Error(path + ": not a fingerprint file (" + e.what() + ")");
  }
}

nlohmann::json fingerprint_of(const DatasetFacts& f) {
  return {{"sha256", f.sha256},
          {"bytes", f.bytes},
          {"transitions", f.transitions},
          {"episodes", f.episodes},
          {"return_mean", f.returns.mean},
          {"return_std", f.returns.std},
          {"normalized_mean", f.normalized.mean},
          {"normalized_min", f.normalized.min},
          {"normalized_max", f.normalized.max}};
}

FingerprintVerdict check_suite_fingerprint(const DatasetFacts& f, const nlohmann::json& fingerprints) {
  if (!fingerprints.contains(f.name)) {
    bool in_suite = false;
    for (const auto& e : datasets::suite()) in_suite |= e.name == f.name;
    return {false, false, in_suite ? "no fingerprint committed for " + f.name : "not a suite dataset"};
  }
  const auto& fp = fingerprints[f.name];
  const size_t transitions = fp.at("transitions").get<size_t>();
  if (f.seed != 0 || f.transitions != transitions)
    return {false, false,
            "another build of " + f.name + " (seed " + std::to_string(f.seed) + ", " + std::to_string(f.transitions) +
                " transitions; the suite's is seed 0, " + std::to_string(transitions) + ")"};
  const std::string want = fp.at("sha256").get<std::string>();
  if (f.sha256 == want) return {true, true, "matches the suite's " + f.name};
  return {true, false, "DIFFERS from the suite's " + f.name + " (sha256 " + want + ")"};
}

namespace {

std::string markdown_table(const nlohmann::json& fingerprints) {
  std::string out =
      "| dataset | transitions | episodes | return (mean ± std) | normalized mean | normalized min / max | MB | sha256 |\n"
      "|---|---|---|---|---|---|---|---|\n";
  for (const auto& e : datasets::suite()) {
    if (!fingerprints.contains(e.name)) {
      out += "| " + e.name + " | not fingerprinted yet | | | | | | |\n";
      continue;
    }
    const auto& f = fingerprints[e.name];
    char row[512];
    std::snprintf(row, sizeof row, "| %s | %zu | %zu | %.1f ± %.1f | %.1f | %.1f / %.1f | %.1f | `%s` |\n",
                  e.name.c_str(), f.at("transitions").get<size_t>(), f.at("episodes").get<size_t>(),
                  f.at("return_mean").get<double>(), f.at("return_std").get<double>(),
                  f.at("normalized_mean").get<double>(), f.at("normalized_min").get<double>(),
                  f.at("normalized_max").get<double>(), f.at("bytes").get<double>() / 1e6,
                  f.at("sha256").get<std::string>().c_str());
    out += row;
  }
  return out;
}

}  // namespace

void add_suite_subcommand(CLI::App& data) {
  struct Args {
    bool json = false, write = false, force = false;
    std::string record;
  };
  auto args = std::make_shared<Args>();
  auto* cmd = data.add_subcommand(
      "suite", "Check the suite's datasets in the data home against their committed fingerprints (sha256)");
  cmd->add_flag("--json", args->json, "Print JSON");
  cmd->add_flag("--write", args->write,
                "Write the fingerprints of the 20 built datasets into assets/datasets/suite-fingerprints.json");
  cmd->add_flag("--force", args->force, "With --write: replace the committed fingerprints");
  cmd->add_option("--record", args->record, "Replace the fingerprint table's section of a markdown file (docs/datasets.md)");
  cmd->callback([args] {
    const nlohmann::json committed = read_suite_fingerprints();
    nlohmann::json measured = nlohmann::json::object(), report = nlohmann::json::array();
    bool any_differs = false;
    for (const auto& e : datasets::suite()) {
      const std::string path = datasets::dataset_path(e.name);
      nlohmann::json row = {{"name", e.name}, {"built", fs::exists(path)}};
      if (fs::exists(path)) {
        const DatasetFacts facts = dataset_facts(path);
        const FingerprintVerdict v = check_suite_fingerprint(facts, committed);
        any_differs |= v.compared && !v.matches;
        row["sha256"] = facts.sha256;
        row["verdict"] = v.text;
        row["matches"] = v.matches;
        if (facts.seed == 0) measured[e.name] = fingerprint_of(facts);
      }
      report.push_back(row);
    }
    if (args->write) {
      if (measured.size() != datasets::suite().size())
        throw Error("--write needs all " + std::to_string(datasets::suite().size()) +
                    " suite datasets built with seed 0 in the data home; " + std::to_string(measured.size()) +
                    " are (build the others with `modiff data build NAME`)");
      const std::string path = suite_fingerprints_path();
      if (fs::exists(path) && !args->force) throw Error(path + " already exists (use --force to replace it)");
      fs::create_directories(fs::path(path).parent_path());
      const nlohmann::json file = {
          {"about", "sha256, size, episodes and returns of the bullet-D4RL suite's datasets as `modiff data build NAME` "
                    "makes them (seed 0, default size); written by `modiff data suite --write`"},
          {"datasets", measured}};
      write_text_atomically(path, file.dump(2) + "\n");
    }
    if (!args->record.empty())
      bench::record_markdown_section(args->record, "suite fingerprints",
                                     markdown_table(args->write ? measured : committed));
    if (args->json) {
      std::cout << nlohmann::json{{"data_home", datasets::data_home()}, {"datasets", report}}.dump(2) << "\n";
    } else {
      std::printf("data home: %s\n", datasets::data_home().c_str());
      for (const auto& r : report)
        std::printf("%-36s %s\n", r["name"].get<std::string>().c_str(),
                    r["built"].get<bool>() ? r["verdict"].get<std::string>().c_str() : "not built");
    }
    if (any_differs) throw Error("a built suite dataset differs from its committed fingerprint (see above)");
  });
}

}  // namespace modiff::cli
