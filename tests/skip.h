#pragma once
// A test case that cannot run on this machine says so and stops: ctest reports it as skipped, never as passed
// (tests/CMakeLists.txt gives every discovered case SKIP_REGULAR_EXPRESSION "MODIFF-SKIPPED"). Use it for a
// whole case only: a case that checked something before skipping would hide that result.
#include <catch2/catch.hpp>

#define MODIFF_SKIP(reason)                  \
  do {                                       \
    WARN("MODIFF-SKIPPED: " << reason);      \
    return;                                  \
  } while (0)
