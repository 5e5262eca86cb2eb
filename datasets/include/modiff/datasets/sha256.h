#pragma once
// SHA-256 of a file (OpenSSL), as lowercase hex: datasets and artifacts record
// it so that a guidance module and a policy can be checked for the same data.
#include <string>

namespace modiff::datasets {

std::string sha256_file(const std::string& path);

}  // namespace modiff::datasets
