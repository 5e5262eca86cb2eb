#include "train/run_folder.h"

#include <string>
#include <vector>

#include "modiff/common/error.h"
#include "modiff/common/remove_tree.h"

namespace modiff::agents {

namespace fs = std::filesystem;

RunFolder::RunFolder(const fs::path& out) : out_(out), made_here_(!fs::exists(out)) {
  std::error_code ec;
  fs::create_directories(out, ec);
  if (ec) throw Error("cannot create run folder " + out.string() + ": " + ec.message());
  lock_.emplace((out / kFolderLockFile).string(), "run folder " + out.string());
}

RunFolder::~RunFolder() {
  lock_.reset();  // removes the lock file
  std::error_code ec;
  if (made_here_ && fs::is_empty(out_, ec) && !ec) fs::remove(out_, ec);
}

namespace {
// What a run writes into its folder; --force removes these (and only these) before a new run starts.
const char* const kRunEntries[] = {"guidance", "diffusion", "checkpoint", "eval_snapshot", "metrics.csv"};
}  // namespace

void start_afresh(const fs::path& out, bool force) {
  std::vector<std::string> present;
  for (const auto& e : fs::directory_iterator(out))
    if (e.path().filename() != kFolderLockFile) present.push_back(e.path().filename().string());
  if (present.empty()) return;
  if (!force)
    throw Error(out.string() + " is not empty (it holds " + present.front() +
                (present.size() > 1 ? " and " + std::to_string(present.size() - 1) + " more" : std::string()) +
                "): use --resume to continue its run, --force to replace it, or another --out");
  for (const auto& e : fs::directory_iterator(out)) {
    const std::string name = e.path().filename().string();
    for (const char* entry : kRunEntries)
      if (name == entry || name.rfind(std::string(entry) + ".", 0) == 0) remove_tree(e.path().string());
  }
}

}  // namespace modiff::agents
