#pragma once
// CUDA graphs of the model's cached step for a fixed batch of B rows and T tokens per row: one
// graph launch replaces the step's few hundred kernel launches, which dominate small models'
// steps on an H100/H200 (an eager 117M-parameter step is 4-6 ms, its memory floor 0.05 ms;
// docs/results/gpu/logs/graph-step). The draft's decode steps use T = 1, the target's
// verification T = k + 1.
// Inputs go into static device buffers; any B distinct in-use slots of the cache may be used whose
// lengths leave T positions within the graph's attention span (the first `span` positions of each
// slot, masked). A short span makes the step cheaper: reading a slot's keys and attending over
// them cost with the span (graphed, 10 heads of 64 on an H200: a batch-16 verification of 5 tokens
// gathers in 12 us and attends in 14 us over 256 positions, 38 and 36 us over 1024; per layer).
// Without CUDA, available() is false and constructing one throws.
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <map>
#include <memory>
#include <tuple>
#include <vector>

namespace osd {

class KVCache;
class Transformer;

class DecodeGraph {
 public:
  static bool available();
  // Captures model.step_static for `batch` rows of `tokens_per_row` tokens on `cache` (both on
  // one CUDA device) attending over `span` positions (0: the whole cache). The cache's contents
  // are left as they were.
  DecodeGraph(Transformer& model, KVCache& cache, int64_t batch, int64_t tokens_per_row = 1,
              int64_t span = 0);
  ~DecodeGraph();
  DecodeGraph(const DecodeGraph&) = delete;
  DecodeGraph& operator=(const DecodeGraph&) = delete;

  // tokens [B, T] int64 (host or device), 1 <= B <= batch(); `slots`: B distinct in-use slots
  // with room for T more positions within the span; `num_new`: positions to commit per row
  // (default T), as Transformer::forward. With B < batch() the graph's other rows repeat row 0.
  // Returns logits [B, T, vocab] fp32: a static buffer, overwritten by the next replay.
  at::Tensor step(const at::Tensor& tokens, const std::vector<int64_t>& slots, const std::vector<int64_t>& num_new = {});
  int64_t batch() const { return batch_; }
  int64_t tokens_per_row() const { return tokens_; }
  int64_t span() const { return span_; }

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  KVCache& cache_;
  int64_t batch_, tokens_, span_;
};

// `steps` greedy draft steps as one CUDA graph: the first step runs each row's pending chunk
// (right-padded to `first_tokens`), each later step the argmax of the step before, and the drafted
// tokens stay on the device. One launch replaces `steps` graph launches and the host work between
// them: drafting 4 tokens at batch 1 took 0.61 ms one step at a time on an H100, mostly the host
// queueing each step's inputs and draws. The tokens equal those
// of the same steps taken one DecodeGraph at a time.
class GreedyDraftGraph {
 public:
  // Captures for `batch` rows, a first chunk of `first_tokens`, `steps` steps, over `span`
  // positions (0: the whole cache). The cache's contents are left as they were.
  GreedyDraftGraph(Transformer& model, KVCache& cache, int64_t batch, int64_t first_tokens,
                   int64_t steps, int64_t span = 0);
  ~GreedyDraftGraph();
  GreedyDraftGraph(const GreedyDraftGraph&) = delete;
  GreedyDraftGraph& operator=(const GreedyDraftGraph&) = delete;

  // chunks[i]: row i's pending tokens (1 to T0 of them); `slots`: B distinct in-use slots
  // (1 <= B <= batch()) with room for T0 + steps - 1 more positions within the span. Commits
  // chunks[i].size() + steps - 1 positions a row. Returns the drafts [B, steps] int64: a static
  // buffer, overwritten by the next run.
  at::Tensor run(const std::vector<std::vector<int64_t>>& chunks,
                 const std::vector<int64_t>& slots);
  int64_t batch() const { return batch_; }

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  KVCache& cache_;
  int64_t batch_, first_, steps_, span_;
};

// The batch a graph for `rows` rows is captured for: 1, 2, 4, then multiples of 8, at most
// max_rows (the cache's slots) and never below rows. A step of fewer rows runs the graph with
// its extra rows repeating the first, so a server sees a few batch shapes instead of every count
// from 1 to its concurrency (each new shape is a capture, milliseconds on the serving path).
int64_t graph_batch(int64_t rows, int64_t max_rows);

// The span a graph for rows reaching `needed` positions uses: the next power of two from 256 on,
// at most `max_len`, so a cache sees at most a few spans per (batch, tokens) shape.
int64_t graph_span(int64_t needed, int64_t max_len);

// The graphs one model and cache use, captured on first use of each (batch, tokens, span) shape,
// the batch chosen by graph_batch from the rows (OSD_GRAPH_BUCKETS=0: the exact count), the span
// by graph_span from the rows' lengths. Off unless CUDA graphs are available, the model is on
// CUDA and OSD_CUDA_GRAPHS is not "0".
class GraphCache {
 public:
  GraphCache(Transformer& model, KVCache& cache);
  bool enabled() const { return enabled_; }
  // Transformer::forward(tokens, slots, cache, num_new) through a graph. `keep` false: the
  // returned logits are the graph's buffer, valid until the next replay on this stream (callers
  // that consume them at once skip a copy).
  at::Tensor forward(const at::Tensor& tokens, const std::vector<int64_t>& slots,
                     const std::vector<int64_t>& num_new, bool keep = true);
  // GreedyDraftGraph::run through a graph of this (B, T0, steps, span) shape, captured on first
  // use; the drafts [B, steps] are its buffer, valid until its next run. Only when enabled().
  at::Tensor draft_greedy(const std::vector<std::vector<int64_t>>& chunks,
                          const std::vector<int64_t>& slots, int64_t steps);
  // The model's weights changed identity (a new snapshot): captured graphs read the old ones.
  void reset(Transformer& model);
  size_t size() const { return graphs_.size() + drafts_.size(); }
  size_t greedy_draft_graphs() const { return drafts_.size(); }
  double capture_ms() const { return capture_ms_; }  // host time spent capturing them

 private:
  int64_t batch_bucket(int64_t rows) const;
  // graph_span for rows in `slots` each writing `width` more positions.
  int64_t span_for(const std::vector<int64_t>& slots, int64_t width) const;
  Transformer* model_;
  KVCache& cache_;
  bool enabled_;
  bool buckets_ = true;
  double capture_ms_ = 0;
  std::map<std::tuple<int64_t, int64_t, int64_t>, std::unique_ptr<DecodeGraph>>
      graphs_;  // (B, T, span)
  std::map<std::tuple<int64_t, int64_t, int64_t, int64_t>, std::unique_ptr<GreedyDraftGraph>>
      drafts_;  // (B, T0, steps, span)
};

}  // namespace osd
