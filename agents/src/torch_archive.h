#pragma once
// LibTorch archives written without LibTorch's file writer.
#include <torch/torch.h>

#include <string>

namespace modiff::agents {

// Writes an archive to `path` through memory and modiff::write_bytes: LibTorch's own file writer aborts the
// process (it throws from a destructor) when the disk fills up; this ends in one modiff::Error instead.
void save_archive(torch::serialize::OutputArchive& archive, const std::string& path);

}  // namespace modiff::agents
