#include "models/core/decode_graph.hpp"

#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <functional>
#include <string>

#include "models/core/device_stream.hpp"
#include "models/common/error.hpp"
#include "models/core/kv_cache.hpp"
#include "models/core/transformer.hpp"

#if defined(OSD_WITH_CUDA) && __has_include(<ATen/cuda/CUDAGraph.h>)
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#define OSD_HAVE_CUDA_GRAPHS 1
#endif

namespace osd {

#ifdef OSD_HAVE_CUDA_GRAPHS
// Static buffers the graphs read and write. Their int64 inputs are views of one buffer, `inputs`,
// so that a step's inputs arrive as one queued copy from pinned host memory.
struct DecodeGraph::Impl {
  at::cuda::CUDAGraph graph;
  at::Tensor inputs;               // [B * T + 2 * B]: tokens, lens, slots
  at::Tensor tokens, lens, slots;  // [B, T], [B], [B]: views of inputs
  at::Tensor logits;               // [B, T, V]
};
struct GreedyDraftGraph::Impl {
  at::cuda::CUDAGraph graph;
  at::Tensor inputs;                    // [B * T0 + 3 * B]: first, lens, last, slots
  at::Tensor first, lens, last, slots;  // [B, T0], [B], [B], [B]: views of inputs
  at::Tensor drafts;                    // [B, steps]
};

namespace {
// A pinned host buffer of n int64 values: the source of one queued copy to the device (the host
// allocator keeps it until the copy has run).
at::Tensor pinned_int64(int64_t n) {
  return torch::empty({n}, torch::TensorOptions().dtype(torch::kInt64).pinned_memory(true));
}
}  // namespace
#else
struct DecodeGraph::Impl {};
struct GreedyDraftGraph::Impl {};
#endif

bool DecodeGraph::available() {
#ifdef OSD_HAVE_CUDA_GRAPHS
  return torch::cuda::is_available();
#else
  return false;
#endif
}

namespace {
double ms_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}
}  // namespace

int64_t graph_batch(int64_t rows, int64_t max_rows) {
  int64_t batch = rows <= 1 ? 1 : rows <= 2 ? 2 : rows <= 4 ? 4 : (rows + 7) / 8 * 8;
  return std::max(rows, std::min(batch, max_rows));
}

int64_t GraphCache::batch_bucket(int64_t rows) const {
  return buckets_ ? graph_batch(rows, cache_.num_slots()) : rows;
}

int64_t graph_span(int64_t needed, int64_t max_len) {
  int64_t span = 256;
  while (span < needed) span *= 2;
  return std::min(span, max_len);
}

#ifdef OSD_HAVE_CUDA_GRAPHS
namespace {
// Captures `body` (cached steps of `model` that write positions at .. at + width - 1 of slots
// 0 .. batch - 1) into `graph` after two warm-up runs of it, and restores what the cache held
// there. Captures on the caller's stream when it is an actor's own (nothing else queues work
// there); from the default stream (tests, SpecDecoder) on a stream made for the capture.
void capture_steps(at::cuda::CUDAGraph& graph, Transformer& model, KVCache& cache, int64_t batch,
                   int64_t at, int64_t width, const std::function<void()>& body) {
  std::vector<at::Tensor> saved;
  for (int64_t l = 0; l < cache.num_layers(); ++l) {
    saved.push_back(cache.keys(l).narrow(0, 0, batch).narrow(1, at, width).clone());
    saved.push_back(cache.values(l).narrow(0, 0, batch).narrow(1, at, width).clone());
  }
  c10::cuda::CUDAGuard device_guard(model.device());
  std::unique_ptr<ActorStream> own;
  if (c10::cuda::getCurrentCUDAStream() ==
      c10::cuda::getDefaultCUDAStream(model.device().index())) {
    c10::cuda::getCurrentCUDAStream().synchronize();  // the capture stream starts after queued work
    own = std::make_unique<ActorStream>(model.device());
  }
  auto capture = [&] {
    auto stream = c10::cuda::getCurrentCUDAStream();
    // Warm-up on the capture stream (allocator, cuBLAS handles, attention plans), then capture.
    for (int i = 0; i < 2; ++i) body();
    stream.synchronize();
    graph.capture_begin({0, 0}, cudaStreamCaptureModeThreadLocal);
    body();
    graph.capture_end();
    for (int64_t l = 0; l < cache.num_layers(); ++l) {
      cache.keys(l).narrow(0, 0, batch).narrow(1, at, width).copy_(saved[2 * l]);
      cache.values(l).narrow(0, 0, batch).narrow(1, at, width).copy_(saved[2 * l + 1]);
    }
    stream.synchronize();
  };
  if (own)
    own->run_on(capture);
  else
    capture();
}

// The checks both graphs make before capturing `width` positions a row within `span`.
void check_capture(const Transformer& model, const KVCache& cache, const char* what, int64_t batch,
                   int64_t width, int64_t span) {
  if (!model.device().is_cuda() || cache.device() != model.device())
    throw Error(std::string(what) + ": the model and its cache must be on one CUDA device");
  if (batch < 1 || batch > cache.num_slots() || width < 1 || width > span)
    throw Error(std::string(what) + ": batch " + std::to_string(batch) + " x " +
                std::to_string(width) + " positions does not fit a cache of " +
                std::to_string(cache.num_slots()) + " x " + std::to_string(cache.max_len()) +
                " with a span of " + std::to_string(span));
}
}  // namespace
#endif

DecodeGraph::DecodeGraph(Transformer& model, KVCache& cache, int64_t batch, int64_t tokens_per_row,
                         int64_t span)
    : cache_(cache),
      batch_(batch),
      tokens_(tokens_per_row),
      span_(span > 0 ? std::min(span, cache.max_len()) : cache.max_len()) {
#ifdef OSD_HAVE_CUDA_GRAPHS
  check_capture(model, cache, "DecodeGraph", batch, tokens_per_row, span_);
  torch::NoGradGuard no_grad;
  impl_ = std::make_unique<Impl>();
  auto i64 = torch::TensorOptions().dtype(torch::kInt64).device(model.device());
  const int64_t T = tokens_per_row;
  impl_->inputs = torch::zeros({batch * (T + 2)}, i64);
  impl_->tokens = impl_->inputs.narrow(0, 0, batch * T).view({batch, T});
  impl_->lens = impl_->inputs.narrow(0, batch * T, batch);
  impl_->slots = impl_->inputs.narrow(0, batch * (T + 1), batch);
  // Warm-up runs write the span's last T positions of slots 0..B-1 (restored after the capture).
  const int64_t at = span_ - T;
  impl_->lens.fill_(at);
  impl_->slots.copy_(torch::arange(batch, i64));
  capture_steps(impl_->graph, model, cache, batch, at, tokens_per_row, [&] {
    impl_->logits = model.step_static(impl_->tokens, impl_->lens, impl_->slots, cache, span_);
  });
#else
  (void)model;
  throw Error("DecodeGraph: this build has no CUDA graphs (CPU libtorch)");
#endif
}

DecodeGraph::~DecodeGraph() = default;

at::Tensor DecodeGraph::step(const at::Tensor& tokens, const std::vector<int64_t>& slots, const std::vector<int64_t>& num_new) {
#ifdef OSD_HAVE_CUDA_GRAPHS
  const int64_t B = tokens.dim() == 2 ? tokens.size(0) : 0;
  if (B < 1 || B > batch_ || tokens.size(1) != tokens_ || tokens.scalar_type() != torch::kInt64)
    throw Error("DecodeGraph::step: tokens must be int64 [B, " + std::to_string(tokens_) +
                "] with 1 <= B <= " + std::to_string(batch_));
  if (static_cast<int64_t>(slots.size()) != B)
    throw Error("DecodeGraph::step: " + std::to_string(slots.size()) + " slots for " +
                std::to_string(B) + " rows");
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
  // Rows past B (a graph captured for a larger batch) repeat row 0: the same tokens in the same
  // slot at the same positions write the same keys and values there; their logits are dropped.
  std::vector<int64_t> all_lens(lens), all_slots(slots);
  all_lens.resize(batch_, lens[0]);
  all_slots.resize(batch_, slots[0]);
  // Queued copies: the host does not wait for the stream. Host tokens travel with lens and slots
  // as one copy; tokens already on the device (a draft step fed by the last) are copied there.
  const bool host_tokens = !tokens.is_cuda();
  const int64_t from = host_tokens ? 0 : batch_ * tokens_;
  auto packed = pinned_int64(batch_ * (tokens_ + 2) - from);
  int64_t* out = packed.data_ptr<int64_t>();
  if (host_tokens) {
    const auto t = tokens.contiguous();
    const int64_t* in = t.data_ptr<int64_t>();
    for (int64_t row = 0; row < batch_; ++row)
      std::copy_n(in + (row < B ? row : 0) * tokens_, tokens_, out + row * tokens_);
  } else {
    impl_->tokens.copy_(
        B == batch_ ? tokens
                    : torch::cat({tokens, tokens.narrow(0, 0, 1).expand({batch_ - B, tokens_})}),
        /*non_blocking=*/true);
  }
  std::copy(all_lens.begin(), all_lens.end(), out + batch_ * tokens_ - from);
  std::copy(all_slots.begin(), all_slots.end(), out + batch_ * (tokens_ + 1) - from);
  impl_->inputs.narrow(0, from, packed.size(0)).copy_(packed, /*non_blocking=*/true);
  impl_->graph.replay();
  cache_.commit(slots, commit);
  return B == batch_ ? impl_->logits : impl_->logits.narrow(0, 0, B);
#else
  (void)tokens;
  (void)slots;
  (void)num_new;
  throw Error("DecodeGraph: this build has no CUDA graphs");
#endif
}

GreedyDraftGraph::GreedyDraftGraph(Transformer& model, KVCache& cache, int64_t batch,
                                   int64_t first_tokens, int64_t steps, int64_t span)
    : cache_(cache),
      batch_(batch),
      first_(first_tokens),
      steps_(steps),
      span_(span > 0 ? std::min(span, cache.max_len()) : cache.max_len()) {
#ifdef OSD_HAVE_CUDA_GRAPHS
  if (first_tokens < 1 || steps < 1)
    throw Error("GreedyDraftGraph: a first chunk of " + std::to_string(first_tokens) + " and " +
                std::to_string(steps) + " steps");
  const int64_t width = first_tokens + steps - 1;  // positions a row writes
  check_capture(model, cache, "GreedyDraftGraph", batch, width, span_);
  torch::NoGradGuard no_grad;
  impl_ = std::make_unique<Impl>();
  auto i64 = torch::TensorOptions().dtype(torch::kInt64).device(model.device());
  const int64_t at = span_ - width;  // warm-up runs write there (restored after the capture)
  const int64_t T0 = first_tokens;
  impl_->inputs = torch::zeros({batch * (T0 + 3)}, i64);
  impl_->first = impl_->inputs.narrow(0, 0, batch * T0).view({batch, T0});
  impl_->lens = impl_->inputs.narrow(0, batch * T0, batch);
  impl_->last = impl_->inputs.narrow(0, batch * (T0 + 1), batch);
  impl_->slots = impl_->inputs.narrow(0, batch * (T0 + 2), batch);
  impl_->lens.fill_(at);
  impl_->last.fill_(T0 - 1);
  impl_->slots.copy_(torch::arange(batch, i64));
  impl_->drafts = torch::zeros({batch, steps}, i64);
  const int64_t V = model.config().vocab_size;
  capture_steps(impl_->graph, model, cache, batch, at, width, [&] {
    auto& m = *impl_;
    auto full = model.step_static(m.first, m.lens, m.slots, cache, span_);           // [B, T0, V]
    auto logits = full.gather(1, m.last.view({batch, 1, 1}).expand({batch, 1, V}));  // [B, 1, V]
    auto drawn = logits.squeeze(1).argmax(-1);                                       // [B]
    m.drafts.select(1, 0).copy_(drawn);
    auto lens = m.lens + m.last + 1;  // [B]: past each row's real chunk
    for (int64_t j = 1; j < steps; ++j) {
      auto step =
          model.step_static(drawn.view({batch, 1}), lens, m.slots, cache, span_);  // [B,1,V]
      drawn = step.squeeze(1).argmax(-1);
      m.drafts.select(1, j).copy_(drawn);
      if (j + 1 < steps) lens = lens + 1;
    }
  });
#else
  (void)model;
  throw Error("GreedyDraftGraph: this build has no CUDA graphs (CPU libtorch)");
#endif
}

GreedyDraftGraph::~GreedyDraftGraph() = default;

at::Tensor GreedyDraftGraph::run(const std::vector<std::vector<int64_t>>& chunks,
                                 const std::vector<int64_t>& slots) {
#ifdef OSD_HAVE_CUDA_GRAPHS
  const auto B = static_cast<int64_t>(slots.size());
  if (B < 1 || B > batch_ || chunks.size() != slots.size())
    throw Error("GreedyDraftGraph::run: " + std::to_string(slots.size()) + " slots and " +
                std::to_string(chunks.size()) + " chunks for a graph of batch " +
                std::to_string(batch_));
  const int64_t width = first_ + steps_ - 1;
  cache_.check_append(slots, width);
  // The inputs as one queued host-to-device copy: first [B, T0] (right-padded), lens, last, slots.
  // Rows past B (a graph captured for a larger batch) repeat row 0, as in DecodeGraph::step.
  auto host = pinned_int64(batch_ * (first_ + 3));
  int64_t* packed = host.data_ptr<int64_t>();
  std::fill_n(packed, host.size(0), 0);
  std::vector<int64_t> commit(B);
  for (int64_t row = 0; row < batch_; ++row) {
    const int64_t i = row < B ? row : 0;
    const auto n = static_cast<int64_t>(chunks[i].size());
    if (n < 1 || n > first_)
      throw Error("GreedyDraftGraph::run: a chunk of " + std::to_string(n) +
                  " tokens outside [1, " + std::to_string(first_) + "]");
    const int64_t len = cache_.length(slots[i]);
    if (len + width > span_)
      throw Error("GreedyDraftGraph::run: slot " + std::to_string(slots[i]) + " holds " +
                  std::to_string(len) + " positions; " + std::to_string(width) +
                  " more pass the graph's span of " + std::to_string(span_));
    std::copy(chunks[i].begin(), chunks[i].end(), packed + row * first_);
    packed[batch_ * first_ + row] = len;
    packed[batch_ * (first_ + 1) + row] = n - 1;
    packed[batch_ * (first_ + 2) + row] = slots[i];
    if (row < B) commit[row] = n + steps_ - 1;
  }
  impl_->inputs.copy_(host, /*non_blocking=*/true);
  impl_->graph.replay();
  cache_.commit(slots, commit);
  return B == batch_ ? impl_->drafts : impl_->drafts.narrow(0, 0, B);
#else
  (void)chunks;
  (void)slots;
  throw Error("GreedyDraftGraph: this build has no CUDA graphs");
#endif
}

GraphCache::GraphCache(Transformer& model, KVCache& cache) : model_(&model), cache_(cache) {
  const char* env = std::getenv("OSD_CUDA_GRAPHS");
  enabled_ = DecodeGraph::available() && model.device().is_cuda() && !(env && std::string(env) == "0");
  const char* buckets = std::getenv("OSD_GRAPH_BUCKETS");
  buckets_ = !(buckets && std::string(buckets) == "0");
}

namespace {
// The graph of `key` in `graphs`, captured by make() on first use (its host time added to
// capture_ms).
template <typename Graphs, typename Make>
auto& captured(Graphs& graphs, const typename Graphs::key_type& key, double& capture_ms,
               Make make) {
  auto it = graphs.find(key);
  if (it == graphs.end()) {
    const auto t0 = std::chrono::steady_clock::now();
    it = graphs.emplace(key, make()).first;
    capture_ms += ms_since(t0);
  }
  return *it->second;
}
}  // namespace

int64_t GraphCache::span_for(const std::vector<int64_t>& slots, int64_t width) const {
  int64_t needed = width;
  for (auto s : slots) needed = std::max(needed, cache_.length(s) + width);
  return graph_span(needed, cache_.max_len());
}

at::Tensor GraphCache::forward(const at::Tensor& tokens, const std::vector<int64_t>& slots,
                               const std::vector<int64_t>& num_new, bool keep) {
  if (!enabled_) return model_->forward(tokens, slots, cache_, num_new);
  const int64_t B = batch_bucket(tokens.size(0)), T = tokens.size(1), span = span_for(slots, T);
  auto& graph = captured(graphs_, {B, T, span}, capture_ms_, [&] {
    return std::make_unique<DecodeGraph>(*model_, cache_, B, T, span);
  });
  auto logits = graph.step(tokens, slots, num_new);
  return keep ? logits.clone() : logits;
}

at::Tensor GraphCache::draft_greedy(const std::vector<std::vector<int64_t>>& chunks,
                                    const std::vector<int64_t>& slots, int64_t steps) {
  if (!enabled_) throw Error("GraphCache::draft_greedy: CUDA graphs are off");
  const int64_t B = batch_bucket(static_cast<int64_t>(chunks.size()));
  int64_t T0 = 1;
  for (const auto& c : chunks) T0 = std::max<int64_t>(T0, static_cast<int64_t>(c.size()));
  const int64_t span = span_for(slots, T0 + steps - 1);
  auto& graph = captured(drafts_, {B, T0, steps, span}, capture_ms_, [&] {
    return std::make_unique<GreedyDraftGraph>(*model_, cache_, B, T0, steps, span);
  });
  return graph.run(chunks, slots);
}

void GraphCache::reset(Transformer& model) {
  graphs_.clear();
  drafts_.clear();
  model_ = &model;
  enabled_ = enabled_ && model.device().is_cuda();
}

}  // namespace osd
