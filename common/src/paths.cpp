#include "modiff/common/paths.h"

#include <algorithm>
#include <cctype>
#include <filesystem>

#include "modiff/common/error.h"

namespace modiff {

namespace fs = std::filesystem;

bool is_path_name(const std::string& name, size_t max_length) {
  return !name.empty() && name.size() <= max_length && name.front() != '.' &&
         std::all_of(name.begin(), name.end(), [](char c) {
           return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-';
         });
}

void check_path_name(const std::string& what, const std::string& name, size_t max_length) {
  if (!is_path_name(name, max_length))
    throw Error(what + " '" + name + "' must be 1-" + std::to_string(max_length) +
                " letters, digits, '.', '_' or '-', not starting with '.'");
}

namespace {

// The path with its existing prefix resolved through symbolic links (weakly_canonical), as a lexical path.
fs::path resolved(const fs::path& p) {
  std::error_code ec;
  fs::path r = fs::weakly_canonical(fs::absolute(p), ec);
  if (ec) throw Error("cannot resolve '" + p.string() + "': " + ec.message());
  return r.lexically_normal();
}

bool inside(const fs::path& root, const fs::path& p) {
  auto r = root.begin(), q = p.begin();
  for (; r != root.end(); ++r, ++q) {
    if (r->empty()) continue;  // a trailing separator
    if (q == p.end() || *r != *q) return false;
  }
  return true;
}

}  // namespace

std::string path_under(const std::string& root, const std::string& relative, const std::string& what) {
  const fs::path rel(relative);
  if (relative.empty() || rel.is_absolute()) throw Error(what + ": '" + relative + "' must be a relative path");
  for (const auto& part : rel)
    if (!is_path_name(part.string(), 255))
      throw Error(what + ": '" + relative + "' may hold only names of letters, digits, '.', '_' and '-' (no '..')");
  const fs::path joined = fs::path(root) / rel;
  if (!inside(resolved(root), resolved(joined)))
    throw Error(what + ": '" + relative + "' leads outside " + root + " (through a symbolic link)");
  return joined.string();
}

}  // namespace modiff
