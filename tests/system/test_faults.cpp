// Faults and careless use (issue 16, classes 2-4): names that would lead out of their folder, earlier results a
// command would replace, two writers at once, a sweep rerun under a changed config, leftovers of killed writers,
// a full disk, absurd sizes, a rank that never finishes. Each ends in one line, a non-zero exit and no lost data.
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <vector>

#include "cli_runner.h"
#include "modiff/common/atomic_file.h"
#include "modiff/common/error.h"
#include "modiff/common/file_lock.h"
#include "modiff/common/paths.h"
#include "modiff/common/remove_tree.h"
#include "modiff/common/spawn.h"
#include "modiff/sweeps/sweep.h"
#include "h5py_python.h"
#include "skip.h"

namespace fs = std::filesystem;
using modiff_test::quoted;

namespace {

// A fresh folder for one test case, removed at its end.
struct Scratch {
  fs::path dir;
  explicit Scratch(const std::string& name)
      : dir(fs::temp_directory_path() / ("modiff_" + name + "_" + std::to_string(::getpid()))) {
    modiff::remove_tree(dir.string());
    fs::create_directories(dir);
  }
  ~Scratch() { modiff::remove_tree(dir.string()); }
  std::string operator/(const std::string& name) const { return (dir / name).string(); }
};

modiff_test::Result cli(const std::string& args) { return modiff_test::modiff(args); }

using modiff_test::lines;

// A small hopper dataset file, built once per test binary run.
std::string small_dataset() {
  struct File {
    std::string path = (fs::temp_directory_path() / ("modiff_faults_data_" + std::to_string(::getpid()) + ".hdf5")).string();
    File() { REQUIRE(cli("data build bullet-hopper-random-v0 --transitions 2000 --num-envs 4 --out " + path).code == 0); }
    ~File() { std::remove(path.c_str()); }
  };
  static const File file;
  return file.path;
}

std::string tiny_train(const std::string& out) {
  return "train --algo idql --dataset " + small_dataset() +
         " --steps 20 --hidden 16 --block-width 32 --batch 32 --device cpu --log-every 10 --out " + quoted(out);
}

std::string tiny_sweep(const std::string& data, long steps, const std::string& extra = "") {
  return "name = \"t\"\ndatasets = [\"" + data + "\"]\nalgos = [\"idql\"]\nschedules = [\"joint\"]\nseeds = [0, 1]\n"
         "steps = " + std::to_string(steps) + "\ndevice = \"cpu\"\nlog_every = 10\n"
         "[network]\nhidden = 16\nblock_width = 32\nbatch = 32\n"
         "[eval]\nseeds = \"0\"\nepisodes = 1\ncandidates = 2\nbootstrap_reps = 10\n" + extra;
}

std::string write(const std::string& path, const std::string& text) {
  std::ofstream(path) << text;
  return path;
}

// A pid that no process has now: a child that has exited and been reaped.
long dead_pid() {
  const pid_t child = ::fork();
  if (child == 0) std::_Exit(0);
  ::waitpid(child, nullptr, 0);
  return child;
}

}  // namespace

TEST_CASE("names that become paths stay under their root", "[security][faults]") {
  Scratch s("paths");
  // The checks themselves: plain names pass; '..', '/', a leading dot, and links out of the root do not.
  CHECK(modiff::is_path_name("train-hopper-medium-idql-joint-s0"));
  for (const char* bad : {"", "..", ".hidden", "a/b", "a b", "x\n", "$(id)"}) CHECK_FALSE(modiff::is_path_name(bad));
  CHECK(modiff::path_under(s.dir.string(), "a/b.pt", "t") == s / "a/b.pt");
  CHECK_THROWS_WITH(modiff::path_under(s.dir.string(), "../x", "t"), Catch::Contains("'..'"));
  CHECK_THROWS_WITH(modiff::path_under(s.dir.string(), "/etc/passwd", "t"), Catch::Contains("relative"));
  fs::create_directory_symlink("/etc", s.dir / "out");
  CHECK_THROWS_WITH(modiff::path_under(s.dir.string(), "out/passwd", "t"), Catch::Contains("outside"));

  // Sweep files: algorithm names (also in cross_algorithm pairs) come from the known list; dataset file names
  // become cell names and must be plain and distinct.
  const std::string data = small_dataset();
  const std::pair<std::string, std::string> sweeps[] = {
      {tiny_sweep(data, 20, "[swaps]\ncross_algorithm = [[\"/../../../X\", \"idql\"]]\n"), "not one of the sweep's algos"},
      {tiny_sweep(data, 20, "[swaps]\ncross_algorithm = [[\"dql\", \"idql\"]]\n"), "'dql' is not one of the sweep's algos"},
      {"datasets = [\"a/x.hdf5\", \"b/x.hdf5\"]\n", "both give cells named 'x'"},
      {"datasets = [\"<img src=x onerror=alert(1)>.hdf5\"]\n", "dataset file names may hold only"},
  };
  for (const auto& [text, expected] : sweeps) {
    INFO(text);
    CHECK_THROWS_WITH(modiff::sweeps::parse_sweep_config(text, "s.toml"), Catch::Contains(expected));
  }

  // A launcher's job id names the ranks' mark files: one holding '../' stays inside OUT/ranks. Rank 1 of 2 runs
  // its shard, marks it and returns; its marks must be inside the sweep.
  const std::string config = write(s / "s.toml", tiny_sweep(data, 20, "[swaps]\nseeds = false\n"));
  setenv("SLURM_PROCID", "1", 1);
  setenv("SLURM_NTASKS", "2", 1);
  setenv("SLURM_JOB_ID", "../../escaped", 1);
  const auto rank1 = cli("sweep " + config + " --out " + s / "sweep" + " --json");
  setenv("SLURM_PROCID", "x1", 1);
  const auto bad_rank = cli("sweep " + config + " --out " + s / "sweep");
  unsetenv("SLURM_PROCID");
  unsetenv("SLURM_NTASKS");
  unsetenv("SLURM_JOB_ID");
  INFO(rank1.err);
  CHECK(rank1.code == 0);
  CHECK(fs::exists(s.dir / "sweep" / "ranks" / "______escaped-1.done"));
  CHECK_FALSE(fs::exists(s.dir / "escaped-1.done"));
  CHECK_FALSE(fs::exists(s.dir.parent_path() / "escaped-1.done"));
  CHECK(bad_rank.code == 1);
  CHECK(bad_rank.err.find("SLURM_PROCID") != std::string::npos);
  // Rank 0 of a job whose rank 1 never started: it runs its shard, then gives up waiting, naming rank 1.
  setenv("SLURM_PROCID", "0", 1);
  setenv("SLURM_NTASKS", "2", 1);
  setenv("SLURM_JOB_ID", "4242", 1);
  const auto rank0 = cli("sweep " + config + " --out " + s / "sweep" + " --rank-timeout 1");
  unsetenv("SLURM_PROCID");
  unsetenv("SLURM_NTASKS");
  unsetenv("SLURM_JOB_ID");
  CHECK(rank0.code == 1);
  CHECK(rank0.err.find("rank 1 of 2 has not finished") != std::string::npos);

  // `behavior export`: a crafted snapshots.json naming a file outside the run is refused, nothing copied.
  const fs::path run = s.dir / "behavior";
  fs::create_directories(run / "checkpoint");
  write((run / "checkpoint" / "state.json").string(), R"({"env_id": "bullet-hopper-v0", "seed": 0, "step": 10})");
  write(s / "secret.pt", "secret");
  write(s / "secret.pt.json", "{}");
  for (const std::string& file : std::vector<std::string>{"../secret.pt", s / "secret.pt"}) {
    INFO(file);
    write((run / "snapshots.json").string(),
          "[{\"step\": 5, \"file\": \"" + file + "\", \"mean_return\": 1, \"normalized_return\": 1},"
          " {\"step\": 10, \"file\": \"" + file + "\", \"mean_return\": 3, \"normalized_return\": 100}]");
    const auto exported = cli("behavior export " + run.string() + " --to " + s / "exported");
    CHECK(exported.code == 1);
    CHECK(lines(exported.err) == 1);
    CHECK(exported.err.find("snapshots.json") != std::string::npos);
    CHECK_FALSE(fs::exists(s.dir / "exported" / "expert.pt"));
  }
}

TEST_CASE("nothing a user has is replaced without --force", "[faults][cli]") {
  Scratch s("keep");
  const std::string out = s / "run";
  REQUIRE(cli(tiny_train(out)).code == 0);
  const std::string metrics = modiff_test::slurp(out + "/metrics.csv");
  // A second run into the same folder: refused, the first run's files untouched.
  const auto again = cli(tiny_train(out));
  CHECK(again.code == 1);
  CHECK(lines(again.err) == 1);
  CHECK(again.err.find("--force") != std::string::npos);
  CHECK(modiff_test::slurp(out + "/metrics.csv") == metrics);
  CHECK(fs::exists(out + "/guidance/manifest.json"));
  // A folder holding anything else is not a place for a new run either.
  fs::create_directories(s.dir / "notes");
  write(s / "notes/todo.txt", "mine");
  CHECK(cli(tiny_train(s / "notes")).code == 1);
  CHECK(modiff_test::slurp(s / "notes/todo.txt") == "mine");
  // --force replaces the earlier run's entries and nothing else; --force with --resume is a bad command line.
  write(out + "/notes.txt", "mine");
  CHECK(cli(tiny_train(out) + " --force --seed 3").code == 0);
  CHECK(modiff_test::slurp(out + "/notes.txt") == "mine");
  CHECK(modiff_test::slurp(out + "/metrics.csv") != metrics);
  CHECK(cli(tiny_train(out) + " --force --resume").code == 2);

  // An evaluation already at --out: kept unless --force.
  const std::string tiny = std::string(MODIFF_TEST_DATA_DIR) + "/tiny-idql";
  write(s / "eval.json", "mine");
  const auto eval_again = cli("eval --diffusion " + tiny + "/diffusion --seeds 0 --episodes 1 --device cpu --out " + s / "eval.json");
  CHECK(eval_again.code == 1);
  CHECK(eval_again.err.find("already exists") != std::string::npos);
  CHECK(modiff_test::slurp(s / "eval.json") == "mine");

  // A report already in --out: kept unless --force.
  const std::string config = write(s / "s.toml", tiny_sweep(small_dataset(), 20, "[swaps]\nseeds = false\n"));
  REQUIRE(cli("sweep " + config + " --out " + s / "sweep").code == 0);
  REQUIRE(cli("report " + s / "sweep" + " --out " + s / "report").code == 0);
  const auto second = cli("report " + s / "sweep" + " --out " + s / "report");
  CHECK(second.code == 1);
  CHECK(second.err.find("already holds a report") != std::string::npos);
  CHECK(cli("report " + s / "sweep" + " --out " + s / "report --force").code == 0);
  // The same sweep named twice would count its runs twice.
  const auto twice = cli("report " + s / "sweep" + " " + s / "sweep/" + " --out " + s / "report2");
  CHECK(twice.code == 1);
  CHECK(twice.err.find("named twice") != std::string::npos);
}

TEST_CASE("two writers of one thing: the second stops with one line naming the holder", "[faults][cli]") {
  Scratch s("locks");
  // This test process holds each lock, as a running modiff would; the command must stop, not wait or write.
  {
    const modiff::ExclusiveLock held(s / "run/.modiff-lock", "run folder");
    const auto r = cli(tiny_train(s / "run"));
    CHECK(r.code == 1);
    CHECK(lines(r.err) == 1);
    CHECK(r.err.find("process " + std::to_string(::getpid())) != std::string::npos);
    CHECK_FALSE(fs::exists(s.dir / "run" / "metrics.csv"));
  }
  {
    const modiff::ExclusiveLock held(s / "d.hdf5.lock", "dataset");
    const auto r = cli("data build bullet-hopper-random-v0 --transitions 300 --out " + s / "d.hdf5");
    CHECK(r.code == 1);
    CHECK(r.err.find("being written by process") != std::string::npos);
    CHECK_FALSE(fs::exists(s.dir / "d.hdf5"));
  }
  {
    // A sweep cell another process is running is left to it (counted as busy), the others run.
    const std::string text = tiny_sweep(small_dataset(), 20, "[swaps]\nseeds = false\n");
    const std::string config = write(s / "s.toml", text);
    const auto cells = modiff::sweeps::plan_cells(modiff::sweeps::parse_sweep_config(text, "s.toml"));
    REQUIRE(cells.size() == 2);
    const modiff::ExclusiveLock held(s / ("sweep/cells/" + cells[0].id + "/.modiff-lock"), "cell");
    const auto r = cli("sweep " + config + " --out " + s / "sweep" + " --json");
    INFO(r.err);
    REQUIRE(r.code == 0);
    const auto j = nlohmann::json::parse(r.out);
    CHECK(j.at("busy") == 1);
    CHECK(j.at("finished") == 1);
    CHECK_FALSE(fs::exists(s.dir / "sweep" / "cells" / cells[0].id / "DONE"));
  }
  // The lock is released when its holder ends: the same commands now succeed.
  CHECK(cli(tiny_train(s / "run")).code == 0);
}

TEST_CASE("a sweep rerun under a changed config stops naming the key, or redoes the changed cells", "[faults][sweep]") {
  Scratch s("redefine");
  const std::string data = s / "hop.hdf5";
  fs::copy_file(small_dataset(), data);
  const std::string out = s / "sweep";
  REQUIRE(cli("sweep " + write(s / "a.toml", tiny_sweep(data, 20)) + " --out " + out).code == 0);
  const auto cells = modiff::sweeps::plan_cells(modiff::sweeps::parse_sweep_config(tiny_sweep(data, 20), "a.toml"));
  const std::string done = out + "/cells/" + cells[0].id + "/DONE";
  const std::string before = modiff_test::slurp(done);
  // Another number of steps: refused before any cell runs, nothing changed.
  const auto changed = cli("sweep " + write(s / "b.toml", tiny_sweep(data, 30)) + " --out " + out);
  CHECK(changed.code == 1);
  CHECK(lines(changed.err) == 1);
  CHECK(changed.err.find("train > steps = 20, the config now gives 30") != std::string::npos);
  CHECK(modiff_test::slurp(done) == before);
  // Other data under the same file name: its sha256 differs.
  REQUIRE(cli("data build bullet-hopper-random-v0 --transitions 2000 --num-envs 4 --seed 9 --force --out " + data).code == 0);
  const auto rebuilt = cli("sweep " + s / "a.toml" + " --out " + out);
  CHECK(rebuilt.code == 1);
  CHECK(rebuilt.err.find("train > dataset > sha256") != std::string::npos);
  CHECK(modiff_test::slurp(done) == before);
  // --redo-changed redoes every cell (the swaps too: their trainings changed) under the new steps.
  const auto redo = cli("sweep " + s / "b.toml" + " --out " + out + " --redo-changed --json");
  INFO(redo.err);
  REQUIRE(redo.code == 0);
  CHECK(nlohmann::json::parse(redo.out).at("finished") == cells.size());
  CHECK(nlohmann::json::parse(modiff_test::slurp(done)).at("defines").at("train").at("steps") == 30);

  // Config values are all checked before the first cell: each of these is one line naming the key.
  const std::pair<std::string, std::string> configs[] = {
      {"datasets = [\"d\"]\ndataset_transitions = -5\n", "dataset_transitions = -5"},
      {"datasets = [\"d\"]\nalgos = []\n", "algos is empty"},
      {"datasets = [\"d\"]\nalgos = [\"idql\", \"idql\"]\n", "names 'idql' twice"},
      {"datasets = [\"d\"]\nseeds = [0, 0]\n", "seeds names '0' twice"},
      {"datasets = [\"d\"]\nseeds = \"0-1x\"\n", "'0-1x'"},
      {"datasets = [\"d\"]\nsteps = 99999999999\n", "steps = 99999999999"},
      {"datasets = [\"d\"]\nsteps = 2.5\n", "steps has the wrong type"},
      {"datasets = [\"d\"]\ndevice = \"gpu\"\n", "device must be"},
      {"datasets = [\"d\"]\n[network]\nhidden = -5\n", "network.hidden = -5"},
      {"datasets = [\"d\"]\n[network]\nema_rate = nan\n", "network.ema_rate"},
      {"datasets = [\"d\"]\n[eval]\nepisodes = 0\n", "eval.episodes = 0"},
      {"datasets = [\"d\"]\n[eval]\nselect = \"best\"\n", "eval.select"},
      {"datasets = [\"d\"]\nseeds = \"0-20000\"\n[swaps]\nseeds = true\n", "cells; at most"},
  };
  for (const auto& [text, expected] : configs) {
    INFO(text);
    CHECK_THROWS_WITH(modiff::sweeps::parse_sweep_config(text, "s.toml"), Catch::Contains(expected));
  }
  // A dataset that does not exist stops the sweep before its first cell.
  const auto missing = cli("sweep " + write(s / "m.toml", tiny_sweep(s / "absent.hdf5", 20)) + " --out " + s / "m");
  CHECK(missing.code == 1);
  CHECK_FALSE(fs::exists(s.dir / "m" / "cells" / cells[0].id));
}

TEST_CASE("leftovers of a killed writer are removed by the next write of the same target", "[faults]") {
  Scratch s("stale");
  const std::string target = s / "eval.json";
  const std::string stale_file = target + ".tmp." + std::to_string(dead_pid());
  const std::string live_file = target + ".tmp.1";  // pid 1 always runs: its temporary is not ours to remove
  write(stale_file, "half");
  write(live_file, "busy");
  modiff::write_text_atomically(target, "{}\n");
  CHECK_FALSE(fs::exists(stale_file));
  CHECK(fs::exists(live_file));
  CHECK(modiff_test::slurp(target) == "{}\n");
  // A folder: its stale temporary goes; killed between the two renames of a swap, the .old copy comes back.
  const std::string folder = s / "checkpoint";
  fs::create_directories(folder + ".tmp." + std::to_string(dead_pid()));
  fs::create_directories(folder + ".old");
  write(folder + ".old/state.json", "previous");
  modiff::write_directory_atomically(folder, [](const std::string& dir) { write(dir + "/state.json", "next"); });
  CHECK(modiff_test::slurp(folder + "/state.json") == "next");
  for (const auto& e : fs::directory_iterator(s.dir)) CHECK(e.path().filename().string().find("checkpoint.") == std::string::npos);
  modiff::remove_tree(folder);
  fs::create_directories(folder + ".old");
  write(folder + ".old/state.json", "previous");
  CHECK_THROWS(modiff::write_directory_atomically(folder, [](const std::string&) { throw modiff::Error("fails"); }));
  CHECK(modiff_test::slurp(folder + "/state.json") == "previous");
}

namespace {

struct TmpfsRun {
  bool ran = false;  // false: this kernel allows no unprivileged namespaces (skipped, with a warning)
  int exit_code = -1;
  std::vector<std::string> files;  // "path size" under the tmpfs after the command
  std::string err;
};

// `args` run under a tmpfs of `size` mounted on `dir`, seeded with `seed`'s files and left with `leave` bytes.
TmpfsRun on_full_disk(const std::string& size, long leave, const fs::path& dir, const std::string& seed,
                      const std::vector<std::string>& args) {
  std::vector<std::string> argv = {MODIFF_ON_SMALL_TMPFS, size, std::to_string(leave), dir.string(), seed, "--"};
  argv.insert(argv.end(), args.begin(), args.end());
  modiff::SpawnOptions o;
  o.capture_stdout = true;
  o.stderr_file = dir.string() + ".err";
  fs::create_directories(dir);
  const auto r = modiff::run_program(argv, o);
  TmpfsRun t;
  t.err = modiff_test::slurp(o.stderr_file);
  if (r.exit_code == 77) return t;
  REQUIRE(r.exit_code == 0);
  t.ran = true;
  std::istringstream lines_in(r.out);
  for (std::string line; std::getline(lines_in, line);) {
    if (line.rfind("exit ", 0) == 0) t.exit_code = std::stoi(line.substr(5));
    else if (t.exit_code >= 0) t.files.push_back(line);
  }
  return t;
}

bool holds_temporaries(const std::vector<std::string>& files) {
  return std::any_of(files.begin(), files.end(), [](const std::string& f) { return f.find(".tmp.") != std::string::npos; });
}

}  // namespace

TEST_CASE("a full disk ends in one line: the previous file kept, no temporaries left", "[faults]") {
  Scratch s("full");
  // The seed of each tmpfs: an earlier dataset and an earlier evaluation, which the failed writes must keep.
  fs::create_directories(s.dir / "seed");
  fs::copy_file(small_dataset(), s / "seed/d.hdf5");
  write(s / "seed/eval.json", "{\"earlier\": true}\n");
  const std::string dataset_size = std::to_string(fs::file_size(s / "seed/d.hdf5"));
  const std::string mnt = s / "mnt";
  const std::string binary = MODIFF_BINARY;
  const std::string tiny = std::string(MODIFF_TEST_DATA_DIR) + "/tiny-idql";

  // HDF5: a dataset rebuilt over the earlier one.
  auto r = on_full_disk("4M", 20000, mnt, s / "seed",
                        {binary, "data", "build", "bullet-hopper-random-v0", "--transitions", "2000", "--force", "--out", mnt + "/d.hdf5"});
  if (!r.ran) {
    MODIFF_SKIP("no unprivileged user namespaces on this machine: the full-disk tests cannot run (" + r.err + ")");
  }
  INFO(r.err);
  CHECK(r.exit_code == 1);
  CHECK(lines(r.err) == 1);
  CHECK(r.err.find("d.hdf5") != std::string::npos);
  CHECK(r.err.find("No space left on device") != std::string::npos);
  CHECK(std::find(r.files.begin(), r.files.end(), "d.hdf5 " + dataset_size) != r.files.end());
  CHECK_FALSE(holds_temporaries(r.files));

  // JSON: an evaluation written over the earlier one.
  r = on_full_disk("4M", 0, mnt, s / "seed",
                   {binary, "eval", "--diffusion", tiny + "/diffusion", "--guidance", tiny + "/guidance", "--seeds", "0",
                    "--episodes", "1", "--device", "cpu", "--force", "--out", mnt + "/eval.json"});
  INFO(r.err);
  CHECK(r.exit_code == 1);
  CHECK(r.err.find("No space left on device") != std::string::npos);
  CHECK(std::find(r.files.begin(), r.files.end(), "eval.json 18") != r.files.end());
  CHECK_FALSE(holds_temporaries(r.files));

  // LibTorch archives: a training whose checkpoint cannot be written (LibTorch's own writer would abort).
  r = on_full_disk("4M", 16384, mnt, "-",
                   {binary, "train", "--algo", "idql", "--dataset", small_dataset(), "--steps", "20", "--hidden", "16",
                    "--block-width", "32", "--batch", "32", "--device", "cpu", "--log-every", "10", "--out", mnt + "/run"});
  INFO(r.err);
  CHECK(r.exit_code == 1);
  CHECK(lines(r.err) == 1);
  CHECK(r.err.find("No space left on device") != std::string::npos);
  CHECK_FALSE(holds_temporaries(r.files));
}

TEST_CASE("absurd sizes are refused before they are allocated", "[faults][datasets]") {
  Scratch s("sizes");
  modiff::SpawnOptions quiet;
  quiet.stderr_file = "/dev/null";
  if (modiff_test::python_with_h5py().empty()) {
    MODIFF_SKIP("no python3 with h5py here (scripts/setup-deps installs python3-h5py)");
  }
  // A dataset declaring 10^10 rows (chunked, never written: the file is small).
  fs::copy_file(small_dataset(), s / "huge.hdf5");
  const std::string script = write(s / "craft.py", R"(import sys, h5py
with h5py.File(sys.argv[1], 'a') as f:
    for key in list(f.keys()):
        if isinstance(f[key], h5py.Dataset):
            shape, dtype = f[key].shape, f[key].dtype
            del f[key]
            f.create_dataset(key, shape=(10**10,) + shape[1:], dtype=dtype, chunks=(4096,) + shape[1:])
)");
  REQUIRE(modiff::run_program({modiff_test::python_with_h5py(), script, s / "huge.hdf5"}).exit_code == 0);
  CHECK(fs::file_size(s / "huge.hdf5") < 10'000'000);
  const auto r = cli("data info " + s / "huge.hdf5");
  CHECK(r.code == 1);
  CHECK(lines(r.err) == 1);
  CHECK(r.err.find("(10000000000") != std::string::npos);
  CHECK(r.err.find("GiB of memory; this machine has") != std::string::npos);
  // Flags: sizes beyond their limits are a bad command line.
  for (const char* args : {"data build bullet-hopper-random-v0 --transitions 999999999999", "rollout --env bullet-hopper-v0 --episodes 2000000000",
                           "data build bullet-hopper-random-v0 --num-envs 10000"}) {
    INFO(args);
    CHECK(cli(args).code == 2);
  }
}

TEST_CASE("loaded artifacts with absurd parameters are refused, naming them", "[faults][agents]") {
  Scratch s("artifact");
  fs::copy(std::string(MODIFF_TEST_DATA_DIR) + "/tiny-idql", s.dir / "policy", fs::copy_options::recursive);
  const std::string manifest = s / "policy/guidance/manifest.json";
  auto j = nlohmann::json::parse(modiff_test::slurp(manifest));
  j["observation_normalization"]["mean"][0] = 1e300;
  write(manifest, j.dump());
  const auto r = cli("eval --diffusion " + s / "policy/diffusion" + " --guidance " + s / "policy/guidance" +
                        " --seeds 0 --episodes 1 --device cpu");
  CHECK(r.code == 1);
  CHECK(lines(r.err) == 1);
  CHECK(r.err.find("observation_normalization") != std::string::npos);
  auto d = nlohmann::json::parse(modiff_test::slurp(s / "policy/diffusion/manifest.json"));
  d["hyperparameters"]["denoiser"]["hidden"] = 1000000000;
  write(s / "policy/diffusion/manifest.json", d.dump());
  const auto big = cli("eval --diffusion " + s / "policy/diffusion" + " --seeds 0 --episodes 1 --device cpu");
  CHECK(big.code == 1);
  CHECK(big.err.find("hidden = 1000000000 is outside") != std::string::npos);
  // A sampler or loss the build does not know is refused, not read as another one.
  d["hyperparameters"]["denoiser"]["hidden"] = 32;
  d["hyperparameters"]["diffusion"]["sampler"] = "ancestral";
  write(s / "policy/diffusion/manifest.json", d.dump());
  const auto sampler = cli("eval --diffusion " + s / "policy/diffusion" + " --seeds 0 --episodes 1 --device cpu");
  CHECK(sampler.code == 1);
  CHECK(lines(sampler.err) == 1);
  CHECK(sampler.err.find("sampler = 'ancestral' is not one of eps-clip, posterior, dpm-solver") != std::string::npos);
}

TEST_CASE("a file on which libhdf5 spins ends in one line at the read deadline", "[faults][datasets]") {
  // Found by scripts/fuzz (fuzz_golden): a crafted global heap behind a string attribute makes libhdf5 1.10 loop.
  setenv("MODIFF_READ_DEADLINE_S", "2", 1);
  const auto r = cli("fidelity " + std::string(MODIFF_TEST_DATA_DIR) + "/crafted/golden-hdf5-global-heap-loop.h5");
  unsetenv("MODIFF_READ_DEADLINE_S");
  CHECK(r.code == 1);
  CHECK(lines(r.err) == 1);
  CHECK(r.err.find("reading took longer than 2 s") != std::string::npos);
}

TEST_CASE("the fuzzer's crafted inputs end in one line", "[faults][security]") {
  const std::string crafted = std::string(MODIFF_TEST_DATA_DIR) + "/crafted";
  const auto qint8 = cli("eval --diffusion " + std::string(MODIFF_TEST_DATA_DIR) + "/tiny-idql/diffusion --guidance " +
                         crafted + "/guidance-qint8-weights --seeds 0 --episodes 1 --device cpu");
  CHECK(qint8.code == 1);
  CHECK(lines(qint8.err) == 1);
  CHECK(qint8.err.find("holds QInt8 values where Float are expected") != std::string::npos);
}

TEST_CASE("a dataset on which libhdf5 reads out of bounds ends in one line", "[faults][security]") {
  const std::string crafted = std::string(MODIFF_TEST_DATA_DIR) + "/crafted";
#if defined(__SANITIZE_ADDRESS__)
  // Under AddressSanitizer (make test-sanitize) modiff stops at libhdf5's own over-read of this file, which is
  // the finding docs/security.md lists as open: nothing to check here but that.
  MODIFF_SKIP("AddressSanitizer build: libhdf5 1.10.8's over-read on hdf5-datatype-overread.hdf5 is reported by ASan");
#endif
  const auto overread = cli("data info " + crafted + "/hdf5-datatype-overread.hdf5");
  CHECK(overread.code == 1);
  CHECK(lines(overread.err) == 1);
  CHECK(overread.err.find("hdf5-datatype-overread.hdf5") != std::string::npos);
}
