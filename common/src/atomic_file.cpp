#include "modiff/common/atomic_file.h"

#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "modiff/common/error.h"
#include "modiff/common/remove_tree.h"

namespace modiff {

void write_atomically(const std::string& path, const std::function<void(const std::string&)>& write) {
  namespace fs = std::filesystem;
  const fs::path target(path);
  if (target.has_parent_path()) {
    std::error_code ec;
    fs::create_directories(target.parent_path(), ec);
    if (ec) throw Error("cannot create directory '" + target.parent_path().string() + "': " + ec.message());
  }
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
  write_atomically(path, [&](const std::string& tmp) {
    std::ofstream out(tmp, std::ios::binary);
    if (!out) throw Error("cannot write '" + tmp + "'");
    out << content;
    out.flush();
    if (!out) throw Error("write failed for '" + tmp + "'");
  });
}

void write_directory_atomically(const std::string& path, const std::function<void(const std::string&)>& fill) {
  namespace fs = std::filesystem;
  const std::string tmp = path + ".tmp." + std::to_string(::getpid()), old = path + ".old";
  remove_tree(tmp);
  std::error_code ec;
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
