#pragma once
// Every file modiff writes goes to a temporary name beside its target and is
// renamed into place, so a crash never leaves a half-written file under the
// real name and never destroys the previous version before the new one exists.
#include <functional>
#include <string>

namespace modiff {

// Calls write(tmp_path), then renames tmp_path to path. If write throws, the
// temporary file is removed and the exception propagates; `path` is untouched.
void write_atomically(const std::string& path, const std::function<void(const std::string&)>& write);

// Convenience for text (or any bytes) content. A failed write (a full disk: ENOSPC, EIO, EROFS, EFBIG) throws
// modiff::Error naming the file and the system's reason; the previous file stays.
void write_text_atomically(const std::string& path, const std::string& content);

// Writes `bytes` to `path` (not atomically: callers pass a temporary name), checking every write and the close.
void write_bytes(const std::string& path, const std::string& bytes);

// Removes the temporaries (path.tmp.<pid>, files or folders) that a killed or crashed writer of `path` left
// behind: those whose process no longer runs. Every atomic write calls it for its own target.
void remove_stale_temporaries(const std::string& path);

// The same for a directory: fill(tmp_dir) builds it beside `path`, which is
// then swapped in, so that a complete version exists under `path` at every
// moment but the instant between two renames (and path + ".old" then).
void write_directory_atomically(const std::string& path, const std::function<void(const std::string&)>& fill);

}  // namespace modiff
