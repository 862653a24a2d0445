#pragma once
// The accept rule of speculative sampling (Leviathan et al.; Chen et al.), batched.
//
// For draft token x_i drawn from q: accept with probability min(1, p(x_i) / q(x_i)); at the first
// rejection draw the recovered token from norm(max(0, p - q)); if all k are accepted, draw the
// bonus token from p at position k + 1. The emitted tokens are then distributed exactly as the
// target's p. Greedy needs no branch of its own: with one-hot p and q (temperature 0) the rule
// accepts exactly while argmaxes agree and then emits the target's argmax. verify_round still
// takes that shortcut when every row of a round is greedy (a handful of kernels instead of the
// rule's few dozen: the verifier's step is launch-bound at small batches); the [sampling] tests
// check that both give the same verdicts.
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <vector>

#include "models/speculation/spec_types.hpp"

namespace osd {

// The rule. The broken_* variants exist only so the statistical test can show that it rejects
// a wrong rule; serving always uses exact.
enum class AcceptRule { exact, broken_q_over_p, broken_resample_from_p };

struct RejectionInput {
  at::Tensor draft_tokens;    // [B, K] int64 (rows padded past their k)
  at::Tensor q;               // [B, K, V] float32: draft's processed probabilities
  at::Tensor p;               // [B, K + 1, V] float32: target's processed probabilities
  std::vector<int64_t> k;     // [B]: draft tokens per row, 0..K
  std::vector<double> u_accept;  // [B * K] row-major uniforms in [0, 1) for the accept tests
  // Uniforms for the recovered / bonus draw: [B], or [B * (K + 1)] row-major, one per position the
  // draw may land on (row i uses u_final[i * (K + 1) + accepted_i]).
  std::vector<double> u_final;
};

struct RejectionOutput {
  std::vector<int64_t> accepted;    // [B] leading draft tokens accepted (0..k)
  std::vector<int64_t> next_token;  // [B] recovered or bonus token
};

// One host synchronisation (reading the small result). Throws osd::Error on bad shapes.
RejectionOutput rejection_sample(const RejectionInput& in, AcceptRule rule = AcceptRule::exact);

// One verification of a round, as the engine and the verifier actor both run it: processes the
// target's logits [B, K + 1, V] with each row's sampling params and applies each row's rule
// (SamplingParams::mode: the p/q rule, or the coupled draw), and builds the verdicts. A row's
// uniforms are counter-based (position_uniform): row_positions[i] is the number of tokens of row
// i's sequence before the round, so draft token j sits at position row_positions[i] + j - 1 and
// the round's last token at row_positions[i] + accepted.
struct RoundVerification {
  at::Tensor target_probs;  // [B, K + 1, V] processed p (undefined on the all-greedy shortcut)
  RejectionOutput out;
  std::vector<Verdict> verdicts;  // emitted = accepted draft tokens + the next token
};
RoundVerification verify_round(const Proposals& prop, const at::Tensor& logits,
                               const std::vector<SamplingParams>& row_params,
                               const std::vector<int64_t>& row_positions,
                               AcceptRule rule = AcceptRule::exact);

}  // namespace osd
