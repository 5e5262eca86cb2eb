// Safety under hostile input (issue 16): nothing a user names is ever run by a shell.
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>

#include "cli_runner.h"
#include "modiff/common/error.h"
#include "modiff/common/spawn.h"

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
  fs::remove_all(dir);
}
