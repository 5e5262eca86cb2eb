#pragma once
// An exclusive lock on what a process is writing (a run folder, a dataset, a sweep cell, a report), so that a
// second modiff process writing the same thing stops with one line naming the holder, or waits for it, instead
// of both reporting success while one result replaces the other. flock(2): the kernel releases the lock when
// its holder exits or is killed, so a crash never leaves a stale lock behind. The holder removes the lock file
// when it is done (a killed holder leaves an unlocked file, which the next writer takes).
#include <memory>
#include <string>

namespace modiff {

// The lock file a folder holds while a process writes it (a run folder, a behavior run, a sweep cell).
inline constexpr const char* kFolderLockFile = ".modiff-lock";

enum class LockWait { Fail, Wait };

class ExclusiveLock {
 public:
  // Locks `lock_file` (created if missing). `what` names the thing in messages ("dataset X", "run folder Y").
  // Fail: throws modiff::Error naming the holder's pid when another process holds it. Wait: prints one line
  // on stderr and blocks until the holder is done.
  ExclusiveLock(const std::string& lock_file, const std::string& what, LockWait wait = LockWait::Fail);
  ~ExclusiveLock();
  ExclusiveLock(ExclusiveLock&& other) noexcept : fd_(other.fd_), path_(std::move(other.path_)) { other.fd_ = -1; }
  ExclusiveLock(const ExclusiveLock&) = delete;
  ExclusiveLock& operator=(const ExclusiveLock&) = delete;
  ExclusiveLock& operator=(ExclusiveLock&&) = delete;

  // Tries once: the lock, or nullptr when another process holds it (no waiting, no error).
  static std::unique_ptr<ExclusiveLock> try_acquire(const std::string& lock_file);

 private:
  ExclusiveLock() = default;
  int fd_ = -1;
  std::string path_;
};

// The process id recorded in a lock file by its holder (0 when unreadable).
long lock_holder(const std::string& lock_file);

}  // namespace modiff
