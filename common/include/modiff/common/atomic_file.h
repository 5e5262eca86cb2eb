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

// Convenience for text content.
void write_text_atomically(const std::string& path, const std::string& content);

// The same for a directory: fill(tmp_dir) builds it beside `path`, which is
// then swapped in, so that a complete version exists under `path` at every
// moment but the instant between two renames (and path + ".old" then).
void write_directory_atomically(const std::string& path, const std::function<void(const std::string&)>& fill);

}  // namespace modiff
