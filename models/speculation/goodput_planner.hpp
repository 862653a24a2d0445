#pragma once
// The goodput planner: how many draft tokens each sequence of a round gets, so that the round
// emits the most tokens per millisecond of the whole batch.
//
// A round over B rows verifies every row in one target pass padded to the longest proposal K, so
// for a given K each row that drafts may as well draft K (its expected tokens E_i(K) only grow
// with K); what remains is which rows draft. A row that has not drafted for a while first makes
// its drafter catch up (lag_i tokens of prefill, priced per token). For each K in 1..k_max the
// rows are ranked by their gain E_i(min(K, cap_i)) - 1 less their catch-up in plain-step tokens,
// and every prefix of the ranking is priced:
//   goodput(K, m) = (B + sum of the m best gains) / (round_ms(B, K, m) + catch-up of the m)
// against the plain step, goodput(0) = B / verify(B, 0). The plan with the highest goodput wins;
// a speculative plan must beat the plain step by `margin` (so noise does not flip a batch into
// speculation that does not pay). Rows a plan leaves at k = 0 cost the drafter nothing.
// It picks k = 0 when acceptance is low or verification grows with tokens as fast as the tokens
// it wins (compute-bound), and long proposals when the draft is good and the batch small.
#include <cstdint>
#include <vector>

#include "models/speculation/cost_model.hpp"

namespace osd {

struct PlanRow {
  std::vector<double> expected_tokens;  // E(k) for k = 0..k_max (AcceptanceModel::expected_tokens)
  int64_t cap = 0;                      // the most draft tokens this row may take now (0: none)
  int64_t lag = 0;                      // tokens its drafter must run first to catch up
};

struct RoundPlan {
  int64_t K = 0;               // the longest proposal (0: a plain decode step)
  std::vector<int64_t> k;      // per row, 0..K
  double tokens = 0;           // expected tokens the round emits
  double ms = 0;               // expected wall time of the round
  double plain_tokens_per_ms = 0;  // the plain step's goodput, for comparison
  int64_t drafting() const;    // rows with k > 0
  double goodput() const { return ms > 0 ? tokens / ms : 0; }
};

RoundPlan plan_round(const std::vector<PlanRow>& rows, const RoundCostModel& costs,
                     double margin = 0.02);

}  // namespace osd
