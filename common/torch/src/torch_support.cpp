#include "modiff/torch/torch_support.h"

#include "modiff/common/atomic_file.h"

namespace modiff {

torch::Device torch_device(const DeviceChoice& choice) {
  return choice.kind == DeviceKind::Cuda ? torch::Device(torch::kCUDA, 0) : torch::Device(torch::kCPU);
}

void save_archive(torch::serialize::OutputArchive& archive, const std::string& path) {
  std::string bytes;
  archive.save_to([&bytes](const void* data, size_t size) -> size_t {
    bytes.append(static_cast<const char*>(data), size);
    return size;
  });
  write_bytes(path, bytes);
}

}  // namespace modiff
