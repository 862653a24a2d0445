#include "models/decode_graph.hpp"

#include <torch/torch.h>

#include "models/error.hpp"
#include "models/kv_cache.hpp"
#include "models/transformer.hpp"

#if defined(OSD_WITH_CUDA) && __has_include(<ATen/cuda/CUDAGraph.h>)
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#define OSD_HAVE_CUDA_GRAPHS 1
#endif

namespace osd {

#ifdef OSD_HAVE_CUDA_GRAPHS
struct DecodeGraph::Impl {
  at::cuda::CUDAGraph graph;
  at::Tensor tokens, lens, slots, logits;  // static buffers the graph reads and writes
};
#else
struct DecodeGraph::Impl {};
#endif

bool DecodeGraph::available() {
#ifdef OSD_HAVE_CUDA_GRAPHS
  return torch::cuda::is_available();
#else
  return false;
#endif
}

DecodeGraph::DecodeGraph(Transformer& model, KVCache& cache, int64_t batch) : cache_(cache), batch_(batch) {
#ifdef OSD_HAVE_CUDA_GRAPHS
  if (!model.device().is_cuda() || cache.device() != model.device())
    throw Error("DecodeGraph: the model and its cache must be on one CUDA device");
  if (batch < 1 || batch > cache.num_slots())
    throw Error("DecodeGraph: batch " + std::to_string(batch) + " outside [1, " + std::to_string(cache.num_slots()) + "]");
  impl_ = std::make_unique<Impl>();
  auto i64 = torch::TensorOptions().dtype(torch::kInt64).device(model.device());
  impl_->tokens = torch::zeros({batch, 1}, i64);
  // Warm-up writes keys/values at the cache's last position of slots 0..B-1: garbage unless a
  // slot is full, so build graphs while no sequence fills its slot.
  impl_->lens = torch::full({batch}, cache.max_len() - 1, i64);
  impl_->slots = torch::arange(batch, i64);
  c10::cuda::CUDAGuard device_guard(model.device());
  auto stream = c10::cuda::getStreamFromPool();
  {
    c10::cuda::CUDAStreamGuard stream_guard(stream);
    // Warm-up on the capture stream (allocator, cuBLAS handles, attention plans), then capture.
    for (int i = 0; i < 3; ++i) model.decode_step_static(impl_->tokens, impl_->lens, impl_->slots, cache);
    stream.synchronize();
    impl_->graph.capture_begin({0, 0}, cudaStreamCaptureModeThreadLocal);
    impl_->logits = model.decode_step_static(impl_->tokens, impl_->lens, impl_->slots, cache);
    impl_->graph.capture_end();
  }
  stream.synchronize();
#else
  (void)model;
  throw Error("DecodeGraph: this build has no CUDA graphs (CPU libtorch)");
#endif
}

DecodeGraph::~DecodeGraph() = default;

at::Tensor DecodeGraph::step(const at::Tensor& tokens, const std::vector<int64_t>& slots) {
#ifdef OSD_HAVE_CUDA_GRAPHS
  if (tokens.dim() != 2 || tokens.size(0) != batch_ || tokens.size(1) != 1 || tokens.scalar_type() != torch::kInt64)
    throw Error("DecodeGraph::step: tokens must be int64 [" + std::to_string(batch_) + ", 1]");
  if (static_cast<int64_t>(slots.size()) != batch_)
    throw Error("DecodeGraph::step: " + std::to_string(slots.size()) + " slots for a graph of batch " + std::to_string(batch_));
  cache_.check_append(slots, 1);
  std::vector<int64_t> lens(slots.size());
  for (size_t i = 0; i < slots.size(); ++i) lens[i] = cache_.length(slots[i]);
  impl_->tokens.copy_(tokens, /*non_blocking=*/true);
  impl_->lens.copy_(torch::tensor(lens, torch::kInt64));
  impl_->slots.copy_(torch::tensor(slots, torch::kInt64));
  impl_->graph.replay();
  cache_.commit(slots, std::vector<int64_t>(slots.size(), 1));
  return impl_->logits;
#else
  (void)tokens;
  (void)slots;
  throw Error("DecodeGraph: this build has no CUDA graphs");
#endif
}

}  // namespace osd
