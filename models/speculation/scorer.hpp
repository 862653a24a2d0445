#pragma once
// The scorer role: the target scores every proposal of a batch in ONE forward pass over
// [pending, d_1 .. d_k] per sequence (k + 1 positions), and rolls its cache back afterwards.
//
// Cache invariant, per sequence: target cache + pending == the sequence so far, with exactly one
// pending token (the last one emitted). After a round that accepted n of k draft tokens the cache
// keeps pending, d_1 .. d_n and the newly emitted token becomes pending.
#include <ATen/core/Tensor.h>

#include <memory>
#include <unordered_map>
#include <vector>

#include "models/core/decode_graph.hpp"
#include "models/core/kv_cache.hpp"
#include "models/speculation/spec_types.hpp"
#include "models/core/transformer.hpp"

namespace osd {

class TargetScorer {
 public:
  TargetScorer(std::shared_ptr<Transformer> target, int64_t num_slots, int64_t max_len);

  // Prefills prompt[0 .. n-2]; prompt.back() becomes pending. Throws when full or too long.
  // With prompt_logits: *prompt_logits = the prefill's logits at its last logit_positions
  // positions (0: all), [m, V]; row j predicts prompt[n - m + j] (undefined for a 1-token prompt).
  void add(SeqId id, const std::vector<int64_t>& prompt, at::Tensor* prompt_logits = nullptr,
           int64_t logit_positions = 0);
  // The same in chunks, so a long prompt does not stall the rounds of running sequences: begin()
  // takes a slot and the prompt without running it (throws as add does); prefill() runs up to
  // max_tokens more of it and returns how many are left (0: the sequence can be scored). With
  // prompt_logits, the chunk that finishes the prompt gives its logits at its last
  // logit_positions positions (fewer when that chunk is shorter).
  void begin(SeqId id, const std::vector<int64_t>& prompt);
  int64_t prefill(SeqId id, int64_t max_tokens, at::Tensor* prompt_logits = nullptr,
                  int64_t logit_positions = 0);
  int64_t unprefilled(SeqId id) const;
  void remove(SeqId id);
  bool has(SeqId id) const { return seqs_.count(id) != 0; }
  size_t size() const { return seqs_.size(); }
  size_t free_slots() const { return static_cast<size_t>(cache_.free_slots()); }
  // Most draft tokens that still fit: scoring k appends k + 1 positions.
  int64_t room(SeqId id) const;

  // Returns the target's raw logits [B, K + 1, V] float32 for the rows of `proposals`.
  at::Tensor score(const Proposals& proposals);
  // Truncates to the accepted prefix; v.emitted.back() becomes pending.
  void commit(const Verdict& v);
  // The target's prefill shapes, run once on the calling thread
  // (Transformer::warm_attention_plans).
  int64_t warm_attention_plans() { return target_->warm_attention_plans(cache_, false); }

  const Transformer& model() const { return *target_; }
  // The target's pass timed at batches 1, 2, 4, ... up to the free slots, with 1 and k_max + 1
  // tokens a row, on scratch slots (the cache is left as it was), until budget_ms is spent:
  // (batch, k, ms) per pass, for the round cost model's first prices.
  struct Timing {
    int64_t batch = 0, k = 0;
    double ms = 0;
  };
  std::vector<Timing> calibrate(int64_t k_max, double budget_ms);
  int64_t length(SeqId id) const;  // tokens of the sequence so far (cache + pending)
  // CUDA graphs captured so far (0 without CUDA graphs): a score() that raised it paid for a
  // capture, so its time says nothing about the step's cost.
  size_t graphs_captured() const { return graphs_.size(); }
  double graph_capture_ms() const { return graphs_.capture_ms(); }

 private:
  struct Seq {
    int64_t slot = 0;
    int64_t pending = 0;
    std::vector<int64_t> to_prefill;  // prompt tokens not yet run (begin / prefill)
    int64_t length_before = 0;
    int64_t scored = -1;  // k of the scored proposal awaiting commit, -1: none
  };
  std::shared_ptr<Transformer> target_;
  KVCache cache_;
  GraphCache graphs_;  // CUDA graphs of the verification step, per (batch, k + 1)
  std::unordered_map<SeqId, Seq> seqs_;
};

}  // namespace osd
