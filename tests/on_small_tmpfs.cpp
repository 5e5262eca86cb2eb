// on_small_tmpfs: runs a command with a small, nearly full tmpfs mounted over a folder, then lists what the
// folder holds, so that tests can fill a disk without root. It enters a new user and mount namespace
// (unshare(2), as an unprivileged user may), mounts a tmpfs of SIZE bytes on DIR, copies SEED's files into it,
// fills it to leave about LEAVE bytes free, runs the command (argument vector, no shell), and prints
//   exit <code>
//   <path> <size>      for every file under DIR but the filler, sorted
// Exit 77 (skip) where the kernel refuses unprivileged namespaces.
//
//   on_small_tmpfs SIZE LEAVE DIR SEED -- program args...
#include <fcntl.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <vector>

namespace fs = std::filesystem;

namespace {

bool write_file(const char* path, const std::string& text) {
  const int fd = ::open(path, O_WRONLY);
  if (fd < 0) return false;
  const bool ok = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
  ::close(fd);
  return ok;
}

// Become root of a new user namespace (mapped to our own uid) with a private mount namespace.
bool enter_namespaces() {
  const uid_t uid = ::getuid();
  const gid_t gid = ::getgid();
  if (::unshare(CLONE_NEWUSER | CLONE_NEWNS) != 0) return false;
  write_file("/proc/self/setgroups", "deny");
  if (!write_file("/proc/self/uid_map", "0 " + std::to_string(uid) + " 1\n")) return false;
  if (!write_file("/proc/self/gid_map", "0 " + std::to_string(gid) + " 1\n")) return false;
  return ::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) == 0;
}

// A filler file leaving about `leave` bytes free.
void fill(const fs::path& dir, unsigned long long leave) {
  struct statvfs st {};
  if (::statvfs(dir.c_str(), &st) != 0) return;
  const unsigned long long free_bytes = static_cast<unsigned long long>(st.f_bavail) * st.f_frsize;
  if (free_bytes <= leave) return;
  std::ofstream out(dir / ".filler", std::ios::binary);
  const std::string block(4096, 'x');
  for (unsigned long long left = free_bytes - leave; left > 0;) {
    const size_t n = left < block.size() ? static_cast<size_t>(left) : block.size();
    out.write(block.data(), static_cast<std::streamsize>(n));
    left -= n;
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 7 || std::string(argv[5]) != "--") {
    std::fprintf(stderr, "usage: on_small_tmpfs SIZE LEAVE DIR SEED -- program args...\n");
    return 2;
  }
  const std::string size = argv[1];
  const unsigned long long leave = std::strtoull(argv[2], nullptr, 10);
  const fs::path dir = argv[3], seed = argv[4];
  if (!enter_namespaces()) {
    std::fprintf(stderr, "on_small_tmpfs: no unprivileged user namespaces here (%s)\n", std::strerror(errno));
    return 77;
  }
  fs::create_directories(dir);
  if (::mount("modiff-test", dir.c_str(), "tmpfs", 0, ("size=" + size).c_str()) != 0) {
    std::fprintf(stderr, "on_small_tmpfs: cannot mount a tmpfs on %s: %s\n", dir.c_str(), std::strerror(errno));
    return 77;
  }
  if (!seed.empty() && seed != "-") fs::copy(seed, dir, fs::copy_options::recursive);
  fill(dir, leave);
  const pid_t child = ::fork();
  if (child == 0) {
    ::execvp(argv[6], argv + 6);
    std::fprintf(stderr, "on_small_tmpfs: cannot run %s: %s\n", argv[6], std::strerror(errno));
    std::_Exit(127);
  }
  int status = 0;
  ::waitpid(child, &status, 0);
  std::printf("exit %d\n", WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
  std::set<std::string> files;
  for (const auto& e : fs::recursive_directory_iterator(dir))
    if (e.path().filename() != ".filler")
      files.insert(fs::relative(e.path(), dir).string() + (e.is_directory() ? "/" : " " + std::to_string(e.file_size())));
  for (const auto& f : files) std::printf("%s\n", f.c_str());
  return 0;
}
