#pragma once
// What every LibTorch stage (behavior/, agents/) shares beside device.h: the torch::Device a --device choice
// names, and LibTorch archives written without LibTorch's file writer.
#include <torch/torch.h>

#include <string>

#include "modiff/torch/device.h"

namespace modiff {

// The device a resolved --device choice names: the CPU, or the first CUDA device.
torch::Device torch_device(const DeviceChoice& choice);

// Writes an archive to `path` through memory and modiff::write_bytes: LibTorch's own file writer aborts the
// process (it throws from a destructor) when the disk fills up; this ends in one modiff::Error instead.
void save_archive(torch::serialize::OutputArchive& archive, const std::string& path);

}  // namespace modiff
