#include "modiff/common/remove_tree.h"

#include <ftw.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "modiff/common/error.h"

namespace modiff {
namespace {

int remove_entry(const char* path, const struct stat*, int, struct FTW*) { return std::remove(path); }

}  // namespace

void remove_tree(const std::string& path) {
  struct stat st;
  if (lstat(path.c_str(), &st) != 0) return;  // nothing there
  // Depth first, not following symbolic links out of the tree.
  if (nftw(path.c_str(), remove_entry, 32, FTW_DEPTH | FTW_PHYS) != 0)
    throw Error("cannot remove '" + path + "': " + std::strerror(errno));
}

}  // namespace modiff
