// The direction of data as the includes show it (docs/architecture.md): a stage includes only the stages to
// its left, and inside agents/ a layer only the layers below it. A file that reaches the wrong way fails
// here, naming the file and the include.
#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <string>
#include <vector>

namespace fs = std::filesystem;

namespace {

struct Include {
  std::string file, target;
};

std::vector<Include> quoted_includes(const fs::path& root, const std::string& folder) {
  std::vector<Include> found;
  const std::regex include_line("^\\s*#\\s*include\\s+\"([^\"]+)\"");
  for (const auto& e : fs::recursive_directory_iterator(root / folder)) {
    const auto ext = e.path().extension();
    if (!e.is_regular_file() || (ext != ".h" && ext != ".cpp" && ext != ".cu" && ext != ".cuh")) continue;
    std::ifstream in(e.path());
    std::smatch m;
    for (std::string line; std::getline(in, line);)
      if (std::regex_search(line, m, include_line)) found.push_back({fs::relative(e.path(), root).string(), m[1]});
  }
  return found;
}

}  // namespace

TEST_CASE("layout: every stage includes only the stages to its left", "[layout]") {
  const fs::path root = MODIFF_SOURCE_DIR;
  // The stages in data order; "torch" is common/torch (what every LibTorch stage shares).
  const std::vector<std::pair<std::string, std::string>> stages = {
      {"common", "common"},     {"torch", "common/torch"}, {"envs", "envs"},       {"datasets", "datasets"},
      {"behavior", "behavior"}, {"agents", "agents"},      {"eval", "eval"},       {"sweeps", "sweeps"},
      {"reports", "reports"}};
  std::map<std::string, size_t> rank;
  for (size_t i = 0; i < stages.size(); ++i) rank[stages[i].first] = i;
  const std::regex public_header("^modiff/([a-z]+)/");
  int checked = 0;
  for (size_t i = 0; i < stages.size(); ++i) {
    for (const auto& inc : quoted_includes(root, stages[i].second)) {
      if (i == 0 && inc.file.rfind("common/torch/", 0) == 0) continue;  // common/torch is a stage of its own
      std::smatch m;
      if (!std::regex_search(inc.target, m, public_header)) continue;
      INFO(inc.file << " includes " << inc.target);
      REQUIRE(rank.count(m[1]) == 1);
      CHECK(rank[m[1]] <= i);
      ++checked;
    }
  }
  CHECK(checked > 100);
}

TEST_CASE("layout: inside agents/ a layer includes only the layers below it", "[layout]") {
  // runtime and cuda (no algorithm knowledge) < ops (fast paths beside their references) < nets (models with
  // a plain forward) < modules (what a user saves and swaps) < algos, io < train, infer.
  const std::map<std::string, int> layer = {{"runtime", 0}, {"cuda", 0}, {"ops", 1},   {"nets", 2},  {"modules", 3},
                                            {"algos", 4},   {"io", 4},   {"train", 5}, {"infer", 5}};
  const fs::path root = fs::path(MODIFF_SOURCE_DIR) / "agents" / "src";
  const std::regex layered("^([a-z]+)/");
  int checked = 0;
  for (const auto& inc : quoted_includes(root, ".")) {
    std::smatch from, to;
    const std::string file = fs::path(inc.file).lexically_normal().string();
    INFO(file << " includes " << inc.target);
    REQUIRE(std::regex_search(file, from, layered));  // every source file sits in a layer's folder
    REQUIRE(layer.count(from[1]) == 1);
    if (!std::regex_search(inc.target, to, layered) || inc.target.rfind("modiff/", 0) == 0) continue;
    REQUIRE(layer.count(to[1]) == 1);
    if (from[1] != to[1]) CHECK(layer.at(to[1]) < layer.at(from[1]));
    ++checked;
  }
  CHECK(checked > 50);
}
