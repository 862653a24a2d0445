#pragma once
// What a round costs, learned online from the rounds that ran: the goodput planner's prices.
//
// A round over B rows whose longest proposal is K draft tokens costs
//   verify(B, K)                       the target's pass over K + 1 tokens a row (K = 0: a plain
//                                      decode step), sampling and acceptance included
//   + K * draft_step(A)                the drafter's steps over the A rows that draft (K = 0: none)
//   + hops                             the round trip to the drafter (K = 0: none)
// Each is an exponentially decayed mean per shape bucket: B and A in powers of two (1, 2-3, 4-7,
// ..., 256+). A verification shape never measured is estimated from its bucket: interpolated
// between the nearest K measured; above the longest, along the two longest (flat from one); below
// the shortest, proportional to the tokens; a bucket that measured no longer verification borrows
// the shape of the nearest that did, scaled by its own plain step; nothing measured at all: 1 ms
// flat. Each estimate is optimistic for the option not yet measured (a longer proposal looks no
// dearer, a plain step no dearer than its share of tokens), so the planner tries it once and its
// measured price then stands. The verifier measures the target's passes at every bucket before it
// serves where that is cheap (TargetScorer::calibrate). No torch.
#include <cstdint>
#include <vector>

namespace osd {

class RoundCostModel {
 public:
  explicit RoundCostModel(int64_t k_max = 8, double decay = 0.9);
  void observe_verify(int64_t batch, int64_t K, double ms);
  void observe_draft_step(int64_t rows, double ms);
  void observe_hops(double ms);
  // A drafter's catch-up prefill of `tokens` tokens (rows that did not draft for a while).
  void observe_catch_up(int64_t tokens, double ms);
  // verify(batch, K) for K = 0..k_max.
  std::vector<double> verify_table(int64_t batch) const;
  double verify_ms(int64_t batch, int64_t K) const;
  double draft_step_ms(int64_t rows) const;  // prior: a tenth of a plain step at that batch
  double hops_ms() const { return hops_.seen ? hops_.value : 0.0; }
  // A catch-up token's price (prior: a tenth of a one-row draft step).
  double catch_up_ms_per_token() const;
  // The whole round: verify(batch, K) + K * draft_step(drafting rows) + hops (K > 0).
  double round_ms(int64_t batch, int64_t K, int64_t drafting_rows) const;
  int64_t k_max() const { return k_max_; }
  // Buckets and their upper bounds, for stats: bucket b holds batches in [2^b, 2^(b+1)).
  static int bucket(int64_t batch);
  static constexpr int kBuckets = 9;

 private:
  struct Mean {
    double value = 0;
    bool seen = false;
  };
  void update(Mean& m, double x) const;
  // verify_[b] estimated from its own measurements only (empty when it has none).
  std::vector<double> bucket_table(int b) const;
  int64_t k_max_;
  double decay_;
  std::vector<std::vector<Mean>> verify_;  // [bucket][K]
  std::vector<Mean> draft_;                // [bucket]
  Mean hops_, catch_up_;  // catch_up_: ms per token
};

}  // namespace osd
