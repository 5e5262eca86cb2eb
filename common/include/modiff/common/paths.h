#pragma once
// Names that become paths. A name a user or a file supplies (a dataset, an algorithm, a cell id, a job id, a file
// named inside a run's JSON) is checked before it is joined to a folder, and the joined path is checked to stay
// inside that folder, so no name can reach outside the place it belongs to (`..`, `/`, links).
#include <string>

namespace modiff {

// Throws modiff::Error unless `name` is 1..max_length characters of letters, digits, '.', '_' and '-', and does
// not start with '.'; `what` names the thing in the message ("cell id", "SLURM_JOB_ID").
void check_path_name(const std::string& what, const std::string& name, size_t max_length = 128);

// True when `name` passes check_path_name.
bool is_path_name(const std::string& name, size_t max_length = 128);

// root / relative, after checking that `relative` is a relative path whose parts are path names (no "..", no
// leading '/') and that the result, with every symbolic link of its existing part resolved, stays under root.
// `what` names the source of `relative` in the message.
std::string path_under(const std::string& root, const std::string& relative, const std::string& what);

}  // namespace modiff
