#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include "modiff/agents/device.h"

int main(int argc, char** argv) {
  modiff::agents::use_reproducible_cpu_arithmetic();  // as the modiff program does, before any tensor op
  return Catch::Session().run(argc, argv);
}
