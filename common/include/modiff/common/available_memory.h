#pragma once
// Sizes checked before they are allocated: an absurd request (a dataset declaring 10^10 rows, 10^8 transitions
// to generate on a small machine) ends in one line saying what was asked and what the machine has, instead of
// std::bad_alloc or the OOM killer.
#include <cstdint>
#include <string>

namespace modiff {

// MemAvailable from /proc/meminfo plus free swap, in bytes (a large number where it cannot be read).
uint64_t available_memory_bytes();

// Throws modiff::Error when `bytes` (the estimate for `what`) exceed the available memory.
void check_fits_in_memory(const std::string& what, double bytes);

}  // namespace modiff
