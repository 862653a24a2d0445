// Precompiled header for every osd target: libtorch is by far the most expensive include.
#pragma once
#include <torch/torch.h>
