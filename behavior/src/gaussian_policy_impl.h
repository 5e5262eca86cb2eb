#pragma once
// GaussianPolicy's state, shared by gaussian_policy.cpp and the SAC trainer
// (which wraps its live actor to save snapshots).
#include "modiff/behavior/gaussian_policy.h"
#include "sac_networks.h"

namespace modiff::behavior {

struct GaussianPolicy::Impl {
  PolicyFileInfo info;
  Actor actor{nullptr};
  at::Generator gen = at::detail::createCPUGenerator();
};

}  // namespace modiff::behavior
