#pragma once
// SHA-256 of a file (OpenSSL), as lowercase hex: datasets and artifacts record
// it so that a guidance module and a policy can be checked for the same data.
#include <string>

namespace modiff::datasets {

std::string sha256_file(const std::string& path);

// SHA-256 of a dataset's rows (observations, actions, rewards, terminals, timeouts, next observations, as
// little-endian bytes in that order): its content, whatever file format or library wrote it.
struct Dataset;
std::string sha256_rows(const Dataset& dataset);

}  // namespace modiff::datasets
