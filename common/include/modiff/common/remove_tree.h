#pragma once
// Deletes a file or a directory tree (like `rm -rf`); a missing path is fine.
// Written with nftw rather than std::filesystem::remove_all: PyTorch's pip
// LibTorch exports its own remove_all, which crashed modiff on the GPU machine
// when it won the symbol lookup (docs/gpu.md).
#include <string>

namespace modiff {

void remove_tree(const std::string& path);

}  // namespace modiff
