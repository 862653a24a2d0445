#include "models/core/autocast.hpp"

#include <ATen/autocast_mode.h>
#include <torch/version.h>

namespace osd {

bool cuda_autocast_enabled() {
#if TORCH_VERSION_MAJOR >= 2
  return at::autocast::is_autocast_enabled(at::kCUDA);
#else
  return false;
#endif
}

CudaAutocast::CudaAutocast(bool on) : on_(on) {
#if TORCH_VERSION_MAJOR >= 2
  if (on_) {
    at::autocast::set_autocast_dtype(at::kCUDA, at::kBFloat16);
    at::autocast::set_autocast_enabled(at::kCUDA, true);
  }
#else
  on_ = false;
#endif
}

CudaAutocast::~CudaAutocast() {
#if TORCH_VERSION_MAJOR >= 2
  if (on_) {
    at::autocast::set_autocast_enabled(at::kCUDA, false);
    at::autocast::clear_cache();
  }
#endif
}

}  // namespace osd
