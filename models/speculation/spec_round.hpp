#pragma once
// One speculative round after the proposal, as the library's SpecDecoder and the verifier actor
// both run it:
//   score   the target's one pass over [pending, d_1 .. d_k] of every row   -> logits [B, K + 1, V]
//   verify  each row's accept rule (rejection_sampler.hpp), the round's one host sync
//   commit  the target's cache keeps the accepted prefix; the emitted token becomes pending
// The drafter's side of the commit is the caller's (the actor sends it with the next proposal).
#include <ATen/core/Tensor.h>

#include <vector>

#include "models/speculation/rejection_sampler.hpp"
#include "models/speculation/scorer.hpp"

namespace osd {

struct SpecRound {
  RoundVerification verified;  // verdicts, one per row of the proposal
  at::Tensor logits;           // [B, K + 1, V] the target's raw logits (a graph's buffer: read now)
  // With keep_logits: a copy of the logits as [B * (K + 1), V], queued before the host sync, so it
  // is complete once the verdicts are (the distillation records are built from it).
  at::Tensor logits_copy;
  std::vector<int64_t> positions;  // per row: tokens of the sequence before the round
  bool captured_graph = false;     // the pass captured a CUDA graph (its time is not a step's)
};

// Throws osd::Error (and leaves the scorer's sequences unscored) on bad proposals.
SpecRound run_spec_round(TargetScorer& scorer, const Proposals& prop,
                         const std::vector<SamplingParams>& params, bool keep_logits = false,
                         AcceptRule rule = AcceptRule::exact);

}  // namespace osd
