#define CATCH_CONFIG_RUNNER
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "modiff/torch/device.h"
#include "modiff/common/remove_tree.h"

int main(int argc, char** argv) {
  modiff::use_reproducible_cpu_arithmetic();  // as the modiff program does, before any tensor op
  // No test may write into the user's data home (~/.cache/modiff): the tests, and every modiff they start, get
  // a HOME of their own for the run, and MODIFF_HOME only where a case sets it to its own folder.
  const std::string home = (std::filesystem::temp_directory_path() / ("modiff_test_home_" + std::to_string(::getpid())))
                               .string();
  std::filesystem::create_directories(home);
  ::setenv("HOME", home.c_str(), 1);
  ::unsetenv("MODIFF_HOME");
  const int failures = Catch::Session().run(argc, argv);
  modiff::remove_tree(home);
  return failures;
}
