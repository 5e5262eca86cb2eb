#pragma once
// Precompiled header for every agents/ source that needs LibTorch: the torch
// headers dominate compile time, so they are parsed once per build.
#include <torch/torch.h>
