// Safety under hostile input (issue 16): nothing a user names is ever run by a shell, no data is read from
// outside the file that is named.
#include <unistd.h>

#include <catch2/catch.hpp>
#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "cli_runner.h"
#include "modiff/common/error.h"
#include "modiff/common/remove_tree.h"
#include "modiff/common/spawn.h"
#include "h5py_python.h"
#include "skip.h"

TEST_CASE("programs are started without a shell: an argument is never parsed", "[cli][security]") {
  namespace fs = std::filesystem;
  const fs::path dir = fs::temp_directory_path() / ("modiff_spawn_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const std::string hostile = "a'; touch " + (dir / "pwned").string() + "; echo '$(touch " + (dir / "pwned2").string() + ")`id`";
  modiff::SpawnOptions capture;
  capture.capture_stdout = true;
  const auto echo = modiff::run_program({"echo", hostile}, capture);
  CHECK(echo.exit_code == 0);
  CHECK(echo.out == hostile + "\n");  // the argument arrived whole, as text
  CHECK_FALSE(fs::exists(dir / "pwned"));
  CHECK_FALSE(fs::exists(dir / "pwned2"));
  // Exit codes and redirections come back; a missing program is one error naming it.
  CHECK(modiff::run_program({"false"}).exit_code == 1);
  modiff::SpawnOptions files;
  files.stdout_file = (dir / "out.txt").string();
  files.stderr_file = (dir / "err.txt").string();
  CHECK(modiff::run_program({"ls", (dir / "absent").string()}, files).exit_code != 0);
  CHECK_FALSE(modiff_test::slurp((dir / "err.txt").string()).empty());
  CHECK_THROWS_WITH(modiff::run_program({"modiff-no-such-program"}), Catch::Contains("cannot run modiff-no-such-program"));
  CHECK_FALSE(modiff::find_program("echo").empty());
  CHECK(modiff::find_program("modiff-no-such-program").empty());
  modiff::remove_tree(dir.string());  // not std::filesystem's: the pip LibTorch's copy of it crashed (docs/gpu.md)
}

TEST_CASE("HDF5 datasets whose data lie outside the file are refused, naming the key", "[security][datasets]") {
  namespace fs = std::filesystem;
  modiff::SpawnOptions quiet;
  quiet.stderr_file = "/dev/null";
  if (modiff_test::python_with_h5py().empty()) {
    MODIFF_SKIP("no python3 with h5py here (scripts/setup-deps installs python3-h5py)");
  }
  const fs::path dir = fs::temp_directory_path() / ("modiff_h5links_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const std::string base = (dir / "base.hdf5").string();
  REQUIRE(modiff_test::modiff("data build bullet-hopper-random-v0 --transitions 300 --out " + base).code == 0);
  // Four crafted copies: rewards through an external link, through a soft link, stored in an external raw file,
  // and as a virtual dataset mapped from another file.
  const std::string script = (dir / "craft.py").string();
  std::ofstream(script) << R"(import sys, shutil, h5py, numpy as np
d = sys.argv[1]
rewards = h5py.File(d + '/base.hdf5', 'r')['rewards'][:]
with h5py.File(d + '/secret.hdf5', 'w') as f:
    f['rewards'] = rewards
np.asarray(rewards, dtype='<f4').tofile(d + '/secret.raw')
for kind in ['external_link', 'soft_link', 'external_storage', 'virtual']:
    path = d + '/' + kind + '.hdf5'
    shutil.copy(d + '/base.hdf5', path)
    with h5py.File(path, 'a') as f:
        del f['rewards']
        if kind == 'external_link':
            f['rewards'] = h5py.ExternalLink(d + '/secret.hdf5', '/rewards')
        elif kind == 'soft_link':
            f['stash'] = rewards
            f['rewards'] = h5py.SoftLink('/stash')
        elif kind == 'external_storage':
            f.create_dataset('rewards', shape=rewards.shape, dtype='<f4', external=[(d + '/secret.raw', 0, h5py.h5f.UNLIMITED)])
        else:
            layout = h5py.VirtualLayout(shape=rewards.shape, dtype='<f4')
            layout[:] = h5py.VirtualSource(d + '/secret.hdf5', 'rewards', shape=rewards.shape)
            f.create_virtual_dataset('rewards', layout)
)";
  REQUIRE(modiff::run_program({modiff_test::python_with_h5py(), script, dir.string()}).exit_code == 0);
  for (const std::string kind : {"external_link", "soft_link", "external_storage", "virtual"}) {
    INFO(kind);
    const std::string file = (dir / (kind + ".hdf5")).string();
    const auto info = modiff_test::modiff("data info " + file);
    CHECK(info.code == 1);
    CHECK(info.err.find("'rewards'") != std::string::npos);
    CHECK(info.err.find("refused") != std::string::npos);
    CHECK(std::count(info.err.begin(), info.err.end(), '\n') == 1);  // one line
    const auto imported = modiff_test::modiff("data import " + file + " --as crafted_" + kind + " --force");
    CHECK(imported.code != 0);
  }
  CHECK(modiff_test::modiff("data info " + base).code == 0);  // the file it was made from is fine
  modiff::remove_tree(dir.string());  // not std::filesystem's: the pip LibTorch's copy of it crashed (docs/gpu.md)
}

TEST_CASE("bad option values are a bad command line: exit 2, one line naming the flag, before any work",
          "[security][cli]") {
  const std::string train = "train --algo idql --dataset no-such-data.hdf5 --steps 10 ";
  const std::pair<std::string, std::string> cases[] = {
      {train + "--lr nan", "--lr"},           {train + "--lr -1", "--lr"},
      {train + "--lr 0", "--lr"},             {train + "--batch 0", "--batch"},
      {train + "--hidden 0", "--hidden"},     {train + "--hidden -3", "--hidden"},
      {train + "--hidden 2.5", "--hidden"},   {train + "--block-width 0", "--block-width"},
      {train + "--diffusion-steps 0", "--diffusion-steps"},
      {train + "--ema-rate nan", "--ema-rate"}, {train + "--ema-rate -1", "--ema-rate"},
      {train + "--ema-rate 2", "--ema-rate"}, {train + "--guidance-steps -5", "--guidance-steps"},
      {train + "--eta inf", "--eta"},         {train + "--eval-episodes 0", "--eval-episodes"},
      {"train --algo idql --dataset x.hdf5 --steps 99999999999999999999", "--steps"},
      {"train --algo idql --dataset x.hdf5 --steps 10x", "--steps"},
      {"eval --diffusion d --temperature nan", "--temperature"},
      {"eval --diffusion d --episodes 2000000000", "--episodes"},
      {"eval --diffusion d --bootstrap-reps 2e9", "--bootstrap-reps"},
      {"bench env --seconds nan", "--seconds"},
      {train + "--seed -1", "--seed"},          {train + "--seed 99999999999999999999", "--seed"},
      {train + "--algo sac", "--algo"},         {train + "--schedule both", "--schedule"},
      {train + "--device gpu", "--device"},     {train + "--threads -1", "--threads"},
      {train + "--eval-every 0", "--eval-every"},
      {"eval --diffusion d --seeds 0-1x", "--seeds"}, {"eval --diffusion d --seeds 0,0,0", "--seeds"},
      {"eval --diffusion d --seeds=-1", "--seeds"},   {"eval --diffusion d --candidates 0", "--candidates"},
      {"eval --diffusion d --select best", "--select"}, {"eval --diffusion d --chunk -2", "--chunk"},
      {"sweep x.toml --shard 1/2abc", "--shard"},   {"sweep x.toml --shard 3/2", "--shard"},
      {"sweep x.toml --rank-timeout nan", "--rank-timeout"},
      {"data build bullet-hopper-random-v0 --transitions 0", "--transitions"},
      {"data build bullet-hopper-random-v0 --seed -1", "--seed"},
      {"data import x.hdf5 --as y --format csv", "--format"},
      {"rollout --env bullet-hopper-v0 --policy best", "--policy"},
      {"bench eval --envs 4,x", "--envs"},          {"bench train --algos idql,sac", "--algos"},
      {"bench env --threads 1,0", "--threads"},     {"behavior train --env bullet-hopper-v0 --batch 0", "--batch"},
  };
  for (const auto& [args, flag] : cases) {
    INFO(args);
    const auto r = modiff_test::modiff(args);
    CHECK(r.code == 2);
    CHECK(r.err.find(flag) != std::string::npos);
    CHECK(std::count(r.err.begin(), r.err.end(), '\n') == 1);
  }
}
