#include "modiff/common/file_lock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "modiff/common/error.h"

namespace modiff {

namespace {

int open_lock_file(const std::string& lock_file) {
  const std::filesystem::path p(lock_file);
  std::error_code ec;
  if (p.has_parent_path()) std::filesystem::create_directories(p.parent_path(), ec);
  const int fd = ::open(lock_file.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) throw Error("cannot open lock file '" + lock_file + "': " + std::strerror(errno));
  return fd;
}

// The holder writes its pid so that a second process can name it.
void record_holder(int fd) {
  const std::string pid = std::to_string(::getpid()) + "\n";
  if (::ftruncate(fd, 0) == 0) {
    const ssize_t written = ::pwrite(fd, pid.data(), pid.size(), 0);
    (void)written;  // the pid is a courtesy for messages; the lock holds without it
  }
}

}  // namespace

long lock_holder(const std::string& lock_file) {
  std::ifstream in(lock_file);
  long pid = 0;
  in >> pid;
  return in ? pid : 0;
}

namespace {

// True when `fd` is still the file at `path`: a holder removes its lock file before it lets go, so a process that
// locked the old file after waiting must lock the new one instead.
bool still_there(int fd, const std::string& path) {
  struct stat held {}, now {};
  return ::fstat(fd, &held) == 0 && ::stat(path.c_str(), &now) == 0 && held.st_ino == now.st_ino &&
         held.st_dev == now.st_dev;
}

// A lock file's descriptor, locked, or -1 when another process holds the lock (and `block` is false).
int lock_file(const std::string& path, bool block) {
  for (;;) {
    const int fd = open_lock_file(path);
    int rc;
    while ((rc = ::flock(fd, block ? LOCK_EX : LOCK_EX | LOCK_NB)) != 0 && errno == EINTR) {
    }
    if (rc != 0) {
      const int err = errno;
      ::close(fd);
      if (err == EWOULDBLOCK) return -1;
      throw Error("cannot lock '" + path + "': " + std::strerror(err));
    }
    if (still_there(fd, path)) {
      record_holder(fd);
      return fd;
    }
    ::close(fd);
  }
}

}  // namespace

std::unique_ptr<ExclusiveLock> ExclusiveLock::try_acquire(const std::string& path) {
  const int fd = lock_file(path, false);
  if (fd < 0) return nullptr;
  std::unique_ptr<ExclusiveLock> lock(new ExclusiveLock);
  lock->fd_ = fd;
  lock->path_ = path;
  return lock;
}

ExclusiveLock::ExclusiveLock(const std::string& path, const std::string& what, LockWait wait) : path_(path) {
  fd_ = lock_file(path, false);
  if (fd_ >= 0) return;
  const long holder = lock_holder(path);
  const std::string by = holder > 0 ? "process " + std::to_string(holder) : "another process";
  if (wait == LockWait::Fail)
    throw Error(what + " is being written by " + by + " (lock " + path + "); wait for it to finish or stop it");
  std::fprintf(stderr, "waiting for %s, which %s is writing (lock %s)\n", what.c_str(), by.c_str(), path.c_str());
  fd_ = lock_file(path, true);
}

ExclusiveLock::~ExclusiveLock() {
  if (fd_ < 0) return;
  ::unlink(path_.c_str());  // before letting go: a waiter then sees a stale file and locks a fresh one
  ::close(fd_);             // closing releases the flock
}

}  // namespace modiff
