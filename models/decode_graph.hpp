#pragma once
// A CUDA graph of one decode step (T = 1) for a fixed batch of B rows: one graph launch replaces
// the step's few hundred kernel launches, which dominate small models' steps on an H100/H200
// (docs/RESULTS.md: a 117M target's eager step is 6 ms, its memory floor 0.05 ms). Inputs go
// into static device buffers; any B distinct in-use slots of the cache may be used, of any
// lengths, since attention spans the whole cache (masked). Without CUDA, available() is false
// and constructing one throws.
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <memory>
#include <vector>

namespace osd {

class KVCache;
class Transformer;

class DecodeGraph {
 public:
  static bool available();
  // Captures model.decode_step_static for `batch` rows on `cache` (both on one CUDA device).
  DecodeGraph(Transformer& model, KVCache& cache, int64_t batch);
  ~DecodeGraph();
  DecodeGraph(const DecodeGraph&) = delete;
  DecodeGraph& operator=(const DecodeGraph&) = delete;

  // tokens [B, 1] int64 (host or device), `slots`: B distinct in-use slots with room for one
  // more position. Replays the graph and commits one position per slot. Returns logits
  // [B, 1, vocab] fp32: a static buffer, overwritten by the next step.
  at::Tensor step(const at::Tensor& tokens, const std::vector<int64_t>& slots);
  int64_t batch() const { return batch_; }

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  KVCache& cache_;
  int64_t batch_;
};

}  // namespace osd
