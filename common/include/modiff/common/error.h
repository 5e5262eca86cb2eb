#pragma once
// One error type for everything a user can get wrong (files, flags, values).
// The CLI prints what() as the single line on stderr and exits non-zero.
#include <stdexcept>
#include <string>

namespace modiff {

struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

}  // namespace modiff
