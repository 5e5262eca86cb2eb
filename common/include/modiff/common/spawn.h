#pragma once
// Running other programs without a shell: the program and its arguments go to posix_spawnp as an argument
// vector, so no name a user chose (a file, a folder, a cell) is ever parsed as shell syntax.
#include <string>
#include <vector>

namespace modiff {

struct SpawnOptions {
  std::string stdout_file;      // write the program's stdout there ("" : inherit, unless capture_stdout)
  std::string stderr_file;      // write its stderr there ("" : inherit)
  bool capture_stdout = false;  // collect stdout into SpawnResult::out instead
};

struct SpawnResult {
  int exit_code = -1;  // the program's exit status; 128 + N when signal N ended it
  std::string out;     // its stdout, with capture_stdout
};

// Runs argv[0] (searched on PATH when it holds no '/') with argv and waits for it. Throws modiff::Error when it
// cannot be started (naming the program), never on a non-zero exit: the caller reads exit_code.
SpawnResult run_program(const std::vector<std::string>& argv, const SpawnOptions& options = {});

// The full path of `name` on PATH, or "" when no executable of that name is there.
std::string find_program(const std::string& name);

}  // namespace modiff
