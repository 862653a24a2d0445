#include "models/decode_graph.hpp"

#include <torch/torch.h>

#include <algorithm>
#include <cstdlib>
#include <string>

#include "models/device_stream.hpp"
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

int64_t graph_span(int64_t needed, int64_t max_len) {
  int64_t span = 256;
  while (span < needed) span *= 2;
  return std::min(span, max_len);
}

DecodeGraph::DecodeGraph(Transformer& model, KVCache& cache, int64_t batch, int64_t tokens_per_row,
                         int64_t span)
    : cache_(cache),
      batch_(batch),
      tokens_(tokens_per_row),
      span_(span > 0 ? std::min(span, cache.max_len()) : cache.max_len()) {
#ifdef OSD_HAVE_CUDA_GRAPHS
  if (!model.device().is_cuda() || cache.device() != model.device())
    throw Error("DecodeGraph: the model and its cache must be on one CUDA device");
  if (batch < 1 || batch > cache.num_slots() || tokens_per_row < 1 || tokens_per_row > span_)
    throw Error("DecodeGraph: batch " + std::to_string(batch) + " x " +
                std::to_string(tokens_per_row) + " tokens does not fit a cache of " +
                std::to_string(cache.num_slots()) + " x " + std::to_string(cache.max_len()) +
                " with a span of " + std::to_string(span_));
  torch::NoGradGuard no_grad;
  impl_ = std::make_unique<Impl>();
  auto i64 = torch::TensorOptions().dtype(torch::kInt64).device(model.device());
  impl_->tokens = torch::zeros({batch, tokens_per_row}, i64);
  // Warm-up runs write the span's last T positions of slots 0..B-1: saved here, restored below.
  const int64_t at = span_ - tokens_per_row;
  impl_->lens = torch::full({batch}, at, i64);
  impl_->slots = torch::arange(batch, i64);
  std::vector<at::Tensor> saved;
  for (int64_t l = 0; l < cache.num_layers(); ++l) {
    saved.push_back(cache.keys(l).narrow(0, 0, batch).narrow(1, at, tokens_per_row).clone());
    saved.push_back(cache.values(l).narrow(0, 0, batch).narrow(1, at, tokens_per_row).clone());
  }
  c10::cuda::CUDAGuard device_guard(model.device());
  // Capture on the caller's stream when it is an actor's own (nothing else queues work there);
  // from the default stream (tests, SpecDecoder) on a stream made for the capture.
  std::unique_ptr<ActorStream> own;
  if (c10::cuda::getCurrentCUDAStream() ==
      c10::cuda::getDefaultCUDAStream(model.device().index())) {
    c10::cuda::getCurrentCUDAStream().synchronize();  // the capture stream starts after queued work
    own = std::make_unique<ActorStream>(model.device());
  }
  auto capture = [&] {
    auto stream = c10::cuda::getCurrentCUDAStream();
    // Warm-up on the capture stream (allocator, cuBLAS handles, attention plans), then capture.
    for (int i = 0; i < 2; ++i)
      model.step_static(impl_->tokens, impl_->lens, impl_->slots, cache, span_);
    stream.synchronize();
    impl_->graph.capture_begin({0, 0}, cudaStreamCaptureModeThreadLocal);
    impl_->logits = model.step_static(impl_->tokens, impl_->lens, impl_->slots, cache, span_);
    impl_->graph.capture_end();
    for (int64_t l = 0; l < cache.num_layers(); ++l) {
      cache.keys(l).narrow(0, 0, batch).narrow(1, at, tokens_per_row).copy_(saved[2 * l]);
      cache.values(l).narrow(0, 0, batch).narrow(1, at, tokens_per_row).copy_(saved[2 * l + 1]);
    }
    stream.synchronize();
  };
  if (own)
    own->run_on(capture);
  else
    capture();
#else
  (void)model;
  throw Error("DecodeGraph: this build has no CUDA graphs (CPU libtorch)");
#endif
}

DecodeGraph::~DecodeGraph() = default;

at::Tensor DecodeGraph::step(const at::Tensor& tokens, const std::vector<int64_t>& slots, const std::vector<int64_t>& num_new) {
#ifdef OSD_HAVE_CUDA_GRAPHS
  if (tokens.dim() != 2 || tokens.size(0) != batch_ || tokens.size(1) != tokens_ || tokens.scalar_type() != torch::kInt64)
    throw Error("DecodeGraph::step: tokens must be int64 [" + std::to_string(batch_) + ", " + std::to_string(tokens_) + "]");
  if (static_cast<int64_t>(slots.size()) != batch_)
    throw Error("DecodeGraph::step: " + std::to_string(slots.size()) + " slots for a graph of batch " + std::to_string(batch_));
  std::vector<int64_t> commit = num_new.empty() ? std::vector<int64_t>(slots.size(), tokens_) : num_new;
  if (commit.size() != slots.size()) throw Error("DecodeGraph::step: num_new does not match the slots");
  for (auto n : commit)
    if (n < 1 || n > tokens_) throw Error("DecodeGraph::step: num_new " + std::to_string(n) + " outside [1, T]");
  cache_.check_append(slots, tokens_);
  std::vector<int64_t> lens(slots.size());
  for (size_t i = 0; i < slots.size(); ++i) {
    lens[i] = cache_.length(slots[i]);
    if (lens[i] + tokens_ > span_)
      throw Error("DecodeGraph::step: slot " + std::to_string(slots[i]) + " holds " +
                  std::to_string(lens[i]) + " positions; " + std::to_string(tokens_) +
                  " more pass the graph's span of " + std::to_string(span_));
  }
  // Queued copies: the host does not wait for the stream.
  impl_->tokens.copy_(tokens, /*non_blocking=*/true);
  impl_->lens.copy_(torch::tensor(lens, torch::kInt64), /*non_blocking=*/true);
  impl_->slots.copy_(torch::tensor(slots, torch::kInt64), /*non_blocking=*/true);
  impl_->graph.replay();
  cache_.commit(slots, commit);
  return impl_->logits;
#else
  (void)tokens;
  (void)slots;
  (void)num_new;
  throw Error("DecodeGraph: this build has no CUDA graphs");
#endif
}

GraphCache::GraphCache(Transformer& model, KVCache& cache) : model_(&model), cache_(cache) {
  const char* env = std::getenv("OSD_CUDA_GRAPHS");
  enabled_ = DecodeGraph::available() && model.device().is_cuda() && !(env && std::string(env) == "0");
}

at::Tensor GraphCache::forward(const at::Tensor& tokens, const std::vector<int64_t>& slots,
                               const std::vector<int64_t>& num_new, bool keep) {
  if (!enabled_) return model_->forward(tokens, slots, cache_, num_new);
  const int64_t B = tokens.size(0), T = tokens.size(1);
  int64_t needed = T;
  for (auto s : slots) needed = std::max(needed, cache_.length(s) + T);
  const auto key = std::make_tuple(B, T, graph_span(needed, cache_.max_len()));
  auto it = graphs_.find(key);
  if (it == graphs_.end())
    it =
        graphs_.emplace(key, std::make_unique<DecodeGraph>(*model_, cache_, B, T, std::get<2>(key)))
            .first;
  auto logits = it->second->step(tokens, slots, num_new);
  return keep ? logits.clone() : logits;
}

void GraphCache::reset(Transformer& model) {
  graphs_.clear();
  model_ = &model;
  enabled_ = enabled_ && model.device().is_cuda();
}

}  // namespace osd
