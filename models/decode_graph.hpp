#pragma once
// CUDA graphs of the model's cached step for a fixed batch of B rows and T tokens per row: one
// graph launch replaces the step's few hundred kernel launches, which dominate small models'
// steps on an H100/H200 (an eager 117M-parameter step is 4-6 ms, its memory floor 0.05 ms;
// docs/RESULTS.md). The draft's decode steps use T = 1, the target's verification T = k + 1.
// Inputs go into static device buffers; any B distinct in-use slots of the cache may be used, of
// any lengths, since attention spans the whole cache (masked). Without CUDA, available() is
// false and constructing one throws.
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <map>
#include <memory>
#include <utility>
#include <vector>

namespace osd {

class KVCache;
class Transformer;

class DecodeGraph {
 public:
  static bool available();
  // Captures model.step_static for `batch` rows of `tokens_per_row` tokens on `cache` (both on
  // one CUDA device). The cache's contents are left as they were.
  DecodeGraph(Transformer& model, KVCache& cache, int64_t batch, int64_t tokens_per_row = 1);
  ~DecodeGraph();
  DecodeGraph(const DecodeGraph&) = delete;
  DecodeGraph& operator=(const DecodeGraph&) = delete;

  // tokens [B, T] int64 (host or device); `slots`: B distinct in-use slots with room for T more
  // positions; `num_new`: positions to commit per row (default T), as Transformer::forward.
  // Returns logits [B, T, vocab] fp32: a static buffer, overwritten by the next replay.
  at::Tensor step(const at::Tensor& tokens, const std::vector<int64_t>& slots, const std::vector<int64_t>& num_new = {});
  int64_t batch() const { return batch_; }
  int64_t tokens_per_row() const { return tokens_; }

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  KVCache& cache_;
  int64_t batch_, tokens_;
};

// The graphs one model and cache use, captured on first use of each (batch, tokens) shape. Off
// unless CUDA graphs are available, the model is on CUDA and OSD_CUDA_GRAPHS is not "0".
class GraphCache {
 public:
  GraphCache(Transformer& model, KVCache& cache);
  bool enabled() const { return enabled_; }
  // Transformer::forward(tokens, slots, cache, num_new) through a graph.
  at::Tensor forward(const at::Tensor& tokens, const std::vector<int64_t>& slots, const std::vector<int64_t>& num_new);
  // The model's weights changed identity (a new snapshot): captured graphs read the old ones.
  void reset(Transformer& model);
  size_t size() const { return graphs_.size(); }

 private:
  Transformer* model_;
  KVCache& cache_;
  bool enabled_;
  std::map<std::pair<int64_t, int64_t>, std::unique_ptr<DecodeGraph>> graphs_;
};

}  // namespace osd
