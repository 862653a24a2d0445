#pragma once
// bf16 autocast on CUDA for the scope of one forward (and its backward): matrix products run on
// the tensor cores in bfloat16 while the weights, their gradients and the optimizer stay float32.
// PyTorch keeps the autocast switch per thread, and each actor is a thread, so a scope on the
// distiller's thread leaves the verifier's and the drafters' kernels as they are.
// Torch 2 API; with libtorch 1.13 (the CPU build) the scope does nothing.
namespace osd {

// Whether this thread is inside a CUDA autocast scope (false with libtorch 1.13). The fused
// kernels (models/fused_ops) take their inputs' dtype as given, so they stand aside inside one.
bool cuda_autocast_enabled();

class CudaAutocast {
 public:
  explicit CudaAutocast(bool on);
  ~CudaAutocast();
  CudaAutocast(const CudaAutocast&) = delete;
  CudaAutocast& operator=(const CudaAutocast&) = delete;
  bool active() const { return on_; }

 private:
  bool on_;
};

}  // namespace osd
