#include "modiff/common/spawn.h"

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <sstream>

#include "modiff/common/error.h"

extern char** environ;

namespace modiff {
namespace {

// posix_spawn's file actions, freed however run_program leaves.
struct FileActions {
  posix_spawn_file_actions_t actions;
  FileActions() { posix_spawn_file_actions_init(&actions); }
  ~FileActions() { posix_spawn_file_actions_destroy(&actions); }
};

void redirect_to_file(FileActions& fa, int fd, const std::string& path) {
  if (path.empty()) return;
  if (posix_spawn_file_actions_addopen(&fa.actions, fd, path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644) != 0)
    throw Error("cannot redirect a program's output to " + path);
}

int exit_code_of(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

}  // namespace

SpawnResult run_program(const std::vector<std::string>& argv, const SpawnOptions& options) {
  if (argv.empty() || argv[0].empty()) throw Error("run_program: no program named");
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  FileActions fa;
  int pipe_fds[2] = {-1, -1};
  if (options.capture_stdout) {
    if (::pipe2(pipe_fds, O_CLOEXEC) != 0) throw Error(std::string("cannot create a pipe: ") + std::strerror(errno));
    posix_spawn_file_actions_adddup2(&fa.actions, pipe_fds[1], STDOUT_FILENO);
  } else {
    redirect_to_file(fa, STDOUT_FILENO, options.stdout_file);
  }
  redirect_to_file(fa, STDERR_FILENO, options.stderr_file);
  pid_t pid = 0;
  const int rc = posix_spawnp(&pid, args[0], &fa.actions, nullptr, args.data(), environ);
  if (pipe_fds[1] >= 0) ::close(pipe_fds[1]);
  if (rc != 0) {
    if (pipe_fds[0] >= 0) ::close(pipe_fds[0]);
    throw Error("cannot run " + argv[0] + ": " + std::strerror(rc));
  }
  SpawnResult result;
  if (pipe_fds[0] >= 0) {
    char buffer[4096];
    for (ssize_t n; (n = ::read(pipe_fds[0], buffer, sizeof buffer)) != 0;) {
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) break;
      result.out.append(buffer, static_cast<size_t>(n));
    }
    ::close(pipe_fds[0]);
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0)
    if (errno != EINTR) throw Error("lost the process of " + argv[0] + ": " + std::strerror(errno));
  result.exit_code = exit_code_of(status);
  return result;
}

std::string find_program(const std::string& name) {
  if (name.empty()) return "";
  if (name.find('/') != std::string::npos) return ::access(name.c_str(), X_OK) == 0 ? name : "";
  const char* path = std::getenv("PATH");
  std::stringstream dirs(path ? path : "/usr/bin:/bin");
  for (std::string dir; std::getline(dirs, dir, ':');) {
    const std::string candidate = (dir.empty() ? "." : dir) + "/" + name;
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return "";
}

}  // namespace modiff
