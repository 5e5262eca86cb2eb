#pragma once
// A test case that cannot run on this machine says so and stops: ctest reports it as skipped, never as passed
// (tests/CMakeLists.txt gives every discovered case SKIP_REGULAR_EXPRESSION "MODIFF-SKIPPED"). Use it for a
// whole case only, in the TEST_CASE's own body (its `return` ends the case; inside a helper it would end only
// the helper, and ctest would call a case that then fails skipped): a case that checked something before
// skipping would hide that result.
#include <catch2/catch.hpp>

#define MODIFF_SKIP(reason)                  \
  do {                                       \
    WARN("MODIFF-SKIPPED: " << reason);      \
    return;                                  \
  } while (0)
