#include "modiff/common/atomic_file.h"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "modiff/common/error.h"
#include "modiff/common/remove_tree.h"

namespace modiff {

namespace {

// The pid in "<name>.tmp.<pid>" when `entry` is a temporary of `name`, else 0.
long temporary_owner(const std::string& entry, const std::string& name) {
  const std::string prefix = name + ".tmp.";
  if (entry.size() <= prefix.size() || entry.compare(0, prefix.size(), prefix) != 0) return 0;
  long pid = 0;
  for (size_t i = prefix.size(); i < entry.size(); ++i) {
    if (entry[i] < '0' || entry[i] > '9' || pid > 1'000'000'000) return 0;
    pid = pid * 10 + (entry[i] - '0');
  }
  return pid;
}

bool process_runs(long pid) { return ::kill(static_cast<pid_t>(pid), 0) == 0 || errno == EPERM; }

}  // namespace

void remove_stale_temporaries(const std::string& path) {
  namespace fs = std::filesystem;
  const fs::path target(path);
  const fs::path dir = target.has_parent_path() ? target.parent_path() : fs::path(".");
  const std::string name = target.filename().string();
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const long pid = temporary_owner(it->path().filename().string(), name);
    if (pid > 0 && pid != ::getpid() && !process_runs(pid)) remove_tree(it->path().string());
  }
}

void write_bytes(const std::string& path, const std::string& bytes) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw Error("cannot write '" + path + "': " + std::strerror(errno));
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const int err = n < 0 ? errno : ENOSPC;
      ::close(fd);
      throw Error("cannot write '" + path + "': " + std::strerror(err));
    }
    done += static_cast<size_t>(n);
  }
  if (::close(fd) != 0) throw Error("cannot write '" + path + "': " + std::strerror(errno));
}

void write_atomically(const std::string& path, const std::function<void(const std::string&)>& write) {
  namespace fs = std::filesystem;
  const fs::path target(path);
  if (target.has_parent_path()) {
    std::error_code ec;
    fs::create_directories(target.parent_path(), ec);
    if (ec) throw Error("cannot create directory '" + target.parent_path().string() + "': " + ec.message());
  }
  remove_stale_temporaries(path);
  // The pid keeps two processes writing the same target from sharing a temp name.
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  try {
    write(tmp);
  } catch (...) {
    std::remove(tmp.c_str());
    throw;
  }
  std::error_code ec;
  fs::rename(tmp, target, ec);
  if (ec) {
    std::remove(tmp.c_str());
    throw Error("cannot move '" + tmp + "' to '" + path + "': " + ec.message());
  }
}

void write_text_atomically(const std::string& path, const std::string& content) {
  write_atomically(path, [&](const std::string& tmp) { write_bytes(tmp, content); });
}

void write_directory_atomically(const std::string& path, const std::function<void(const std::string&)>& fill) {
  namespace fs = std::filesystem;
  const std::string tmp = path + ".tmp." + std::to_string(::getpid()), old = path + ".old";
  remove_stale_temporaries(path);
  remove_tree(tmp);
  std::error_code ec;
  // Killed between its two renames, an earlier swap left the last complete version under .old only.
  if (!fs::exists(path) && fs::exists(old)) fs::rename(old, path, ec);
  fs::create_directories(tmp, ec);
  if (ec) throw Error("cannot create directory '" + tmp + "': " + ec.message());
  try {
    fill(tmp);
  } catch (...) {
    remove_tree(tmp);
    throw;
  }
  remove_tree(old);
  if (fs::exists(path)) fs::rename(path, old, ec);
  if (!ec) fs::rename(tmp, path, ec);
  if (ec) throw Error("cannot move '" + tmp + "' to '" + path + "': " + ec.message());
  remove_tree(old);
}

}  // namespace modiff
