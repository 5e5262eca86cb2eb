// Every error docs/errors.md documents, run as the table writes it: its exit code, one stderr line holding the
// documented words, and a sandbox left byte for byte as it was.
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "cli_runner.h"
#include "modiff/common/file_lock.h"
#include "modiff/common/remove_tree.h"
#include "modiff/common/spawn.h"

namespace fs = std::filesystem;

namespace {

struct Row {
  std::string situation, command, holds;
  int exit_code = -1;
};

std::string trim(const std::string& s) {
  const auto a = s.find_first_not_of(' '), b = s.find_last_not_of(' ');
  return a == std::string::npos ? "" : s.substr(a, b - a + 1);
}

std::string unquote(const std::string& cell) {
  const std::string t = trim(cell);
  REQUIRE(t.size() >= 2);
  REQUIRE(t.front() == '`');
  REQUIRE(t.back() == '`');
  return t.substr(1, t.size() - 2);
}

// The rows of the table whose header starts with "| situation |".
std::vector<Row> documented_errors(const std::string& markdown_file) {
  std::ifstream in(markdown_file);
  REQUIRE(in.good());
  std::vector<Row> rows;
  bool in_table = false;
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("| situation |", 0) == 0) {
      in_table = true;
      std::getline(in, line);  // |---|
      continue;
    }
    if (!in_table) continue;
    if (line.empty() || line[0] != '|') break;
    std::vector<std::string> cells;
    std::stringstream ss(line.substr(1));
    for (std::string cell; std::getline(ss, cell, '|');) cells.push_back(cell);
    REQUIRE(cells.size() == 4);
    rows.push_back({trim(cells[0]), unquote(cells[1]), unquote(cells[3]), std::stoi(trim(cells[2]))});
  }
  return rows;
}

std::string replace_all(std::string s, const std::string& from, const std::string& to) {
  for (size_t at = s.find(from); at != std::string::npos; at = s.find(from, at + to.size())) s.replace(at, from.size(), to);
  return s;
}

// Every regular file under dir with its bytes.
std::map<std::string, std::string> snapshot(const fs::path& dir) {
  std::map<std::string, std::string> files;
  for (const auto& e : fs::recursive_directory_iterator(dir))
    files[e.path().string()] = e.is_regular_file() ? modiff_test::slurp(e.path().string()) : std::string("<dir>");
  return files;
}

// What differs between two snapshots: files added, removed or changed.
std::string differences(const std::map<std::string, std::string>& before, const std::map<std::string, std::string>& now) {
  std::string d;
  for (const auto& [path, bytes] : now)
    if (!before.count(path)) d += "added " + path + "\n";
    else if (before.at(path) != bytes) d += "changed " + path + "\n";
  for (const auto& [path, bytes] : before)
    if (!now.count(path)) d += "removed " + path + "\n";
  return d;
}

struct Outcome {
  int code;
  std::string err;
};

// modiff with these arguments, leading NAME=VALUE words set in its environment; no shell.
Outcome run_modiff(const std::string& command_line, const fs::path& dir) {
  std::vector<std::string> argv = {MODIFF_BINARY};
  std::vector<std::string> variables;
  std::istringstream words(command_line);
  for (std::string w; words >> w;) {
    const auto eq = w.find('=');
    if (argv.size() == 1 && eq != std::string::npos && w.rfind("MODIFF_", 0) == 0) {
      variables.push_back(w.substr(0, eq));
      ::setenv(variables.back().c_str(), w.substr(eq + 1).c_str(), 1);
    } else {
      argv.push_back(w);
    }
  }
  modiff::SpawnOptions files;
  files.stdout_file = (dir.parent_path() / "stdout.txt").string();
  files.stderr_file = (dir.parent_path() / "stderr.txt").string();
  const int code = modiff::run_program(argv, files).exit_code;
  for (const auto& v : variables) ::unsetenv(v.c_str());
  return {code, modiff_test::slurp(files.stderr_file)};
}

void must_succeed(const std::vector<std::string>& args) {
  std::vector<std::string> argv = {MODIFF_BINARY};
  argv.insert(argv.end(), args.begin(), args.end());
  modiff::SpawnOptions quiet;
  quiet.capture_stdout = true;
  INFO(args.front() << " " << (args.size() > 1 ? args[1] : ""));
  REQUIRE(modiff::run_program(argv, quiet).exit_code == 0);
}

void write_file(const fs::path& path, const std::string& text) { std::ofstream(path) << text; }

}  // namespace

TEST_CASE("cli: every error docs/errors.md documents ends as it says, changing nothing", "[cli][errors]") {
  const auto rows = documented_errors(std::string(MODIFF_SOURCE_DIR) + "/docs/errors.md");
  REQUIRE(rows.size() >= 40);
  const fs::path root = fs::temp_directory_path() / ("modiff_errors_" + std::to_string(::getpid()));
  const fs::path dir = root / "sandbox";
  modiff::remove_tree(root.string());
  fs::create_directories(dir / "home");
  ::setenv("MODIFF_HOME", (dir / "home").c_str(), 1);

  // The fixtures the table names.
  const std::string data = (dir / "data.hdf5").string(), walker = (dir / "walker.hdf5").string();
  must_succeed({"data", "build", "bullet-hopper-random-v0", "--transitions", "2000", "--num-envs", "4", "--out", data});
  must_succeed({"data", "build", "bullet-walker2d-random-v0", "--transitions", "2000", "--num-envs", "4", "--out", walker});
  const std::vector<std::string> small = {"--hidden", "16", "--block-width", "32", "--batch", "32",
                                          "--device", "cpu", "--log-every", "10", "--steps", "20"};
  auto train = [&](const std::string& algo, const std::string& dataset, const std::string& out,
                   const std::vector<std::string>& more) {
    std::vector<std::string> args = {"train", "--algo", algo, "--dataset", dataset, "--out", (dir / out).string()};
    args.insert(args.end(), small.begin(), small.end());
    args.insert(args.end(), more.begin(), more.end());
    must_succeed(args);
  };
  train("idql", data, "run", {});
  train("idql", walker, "walker-run", {});
  train("dql", data, "dql-run", {});
  train("idql", data, "stopped", {"--stop-after", "10"});
  fs::create_directories(dir / "busy");
  const modiff::ExclusiveLock held((dir / "busy" / ".modiff-lock").string(), "run folder " + (dir / "busy").string());
  write_file(dir / "corrupt.hdf5", modiff_test::slurp(data).substr(0, 20000));
  write_file(dir / "bad-key.toml", "algos = [\"idql\"]\ndatasets = [\"" + data + "\"]\nseeds = [0]\nsteps = 10\nfrobnicate = 1\n");
  write_file(dir / "cross.toml", "algos = [\"idql\", \"dql\"]\ndatasets = [\"" + data +
                                     "\"]\nseeds = [0]\nsteps = 10\n[swaps]\ncross_algorithm = [[\"idql\", \"cfg\"]]\n");
  write_file(dir / "dup-seeds.toml", "algos = [\"idql\"]\ndatasets = [\"" + data + "\"]\nseeds = [0, 0]\nsteps = 10\n");
  write_file(dir / "wrong-type.toml", "algos = [\"idql\"]\ndatasets = [\"" + data + "\"]\nseeds = [0]\nsteps = 2.5\n");
  write_file(dir / "bad.xml", "<mujoco><worldbody><body name=\"a\"><geom type=\"capsule\"\n</mujoco>");
  const std::map<std::string, std::string> names = {
      {"{data}", data},
      {"{walker}", walker},
      {"{corrupt}", (dir / "corrupt.hdf5").string()},
      {"{crafted}", std::string(MODIFF_TEST_DATA_DIR) + "/crafted"},
      {"{run}", (dir / "run").string()},
      {"{walker-run}", (dir / "walker-run").string()},
      {"{dql-run}", (dir / "dql-run").string()},
      {"{stopped}", (dir / "stopped").string()},
      {"{busy}", (dir / "busy").string()},
      {"{small}", "--hidden 16 --block-width 32 --batch 32 --device cpu --log-every 10"},
      {"{bad-key}", (dir / "bad-key.toml").string()},
      {"{cross}", (dir / "cross.toml").string()},
      {"{dup-seeds}", (dir / "dup-seeds.toml").string()},
      {"{wrong-type}", (dir / "wrong-type.toml").string()},
      {"{bad-xml}", (dir / "bad.xml").string()},
      {"{dir}", dir.string()},
  };

  const auto before = snapshot(dir);
  for (const auto& row : rows) {
    std::string command = row.command;
    for (const auto& [name, value] : names) command = replace_all(command, name, value);
    INFO(row.situation << "\nmodiff " << command);
    REQUIRE(command.find('{') == std::string::npos);  // every name in the table is prepared here
    const auto r = run_modiff(command, dir);
    INFO("stderr: " << r.err);
    CHECK(r.code == row.exit_code);
    CHECK(modiff_test::lines(r.err) == 1);
    CHECK(r.err.rfind("modiff: error: ", 0) == 0);
    CHECK(r.err.find(row.holds) != std::string::npos);
    CHECK(differences(before, snapshot(dir)) == "");
  }
  ::unsetenv("MODIFF_HOME");
  modiff::remove_tree(root.string());
}
