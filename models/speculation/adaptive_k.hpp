#pragma once
// Adaptive draft length. With per-token acceptance alpha and cost ratio c (one draft step / one
// target step), a round with k draft tokens emits (1 - alpha^(k+1)) / (1 - alpha) tokens on
// average and costs k*c + 1 target steps, so the expected speedup over plain decoding is
//   S(k) = (1 - alpha^(k+1)) / ((1 - alpha) (k c + 1)),   S(0) = 1.
// Each sequence keeps a decayed estimate of alpha from its own rounds and picks the k in
// [0, k_max] that maximises S. At k = 0 it learns nothing, so it probes with k = 1 every
// `probe_every` rounds.
//
// The formula prices a verification of k + 1 tokens like a one-token step and a round's hops
// between actors at nothing. RoundCosts (osd.adaptive-k-measured, off by default) prices rounds
// by measured times instead: once steps are bound by their kernel count a k = 4 verification
// costs ~1.3x a one-token step, and a round pays ~0.1 ms of hops (H200, docs/RESULTS.md runs
// 10-11). On the CPU it chose as well as the formula (docs/PERFORMANCE.md); on the GPU it is not
// yet measured.
#include <cstdint>
#include <vector>

namespace osd {

double expected_speedup(double alpha, int64_t k, double c);
double expected_tokens_per_round(double alpha, int64_t k);

// Measured costs of speculative rounds, per batch-size bucket (1, 2-3, 4-7, 8-15, 16+): the time
// of a draft step, of a verification whose longest proposal had K tokens (K = 0: a plain step),
// and of a round's hops (the wait for a proposal beyond drafting it). Exponentially decayed
// means; a verification of a K never seen is interpolated between the nearest seen, or
// extrapolated along the two nearest, or taken as flat from the one seen; and a verification of
// K tokens is priced at least as high as one of fewer.
class RoundCosts {
 public:
  explicit RoundCosts(int64_t k_max = 8, double decay = 0.9);
  void observe_draft_step(int64_t batch, double ms);
  void observe_verify(int64_t batch, int64_t K, double ms);
  void observe_hops(double ms);
  // Expected wall times of a round of `batch` rows whose longest proposal is K tokens, for K =
  // 0..k_max (K = 0: a plain step, no drafter involved): the prices one round's choices share.
  std::vector<double> round_table(int64_t batch) const;
  std::vector<double> verify_table(int64_t batch) const;
  double round_ms(int64_t batch, int64_t K) const;
  double verify_ms(int64_t batch, int64_t K) const;
  // c: a draft step over a plain step, at this batch size.
  double cost_ratio(int64_t batch) const;
  int64_t k_max() const { return k_max_; }

 private:
  struct Mean {
    double value = 0;
    bool seen = false;
  };
  static int bucket(int64_t batch);
  void update(Mean& m, double x) const;
  int64_t k_max_;
  double decay_;
  std::vector<std::vector<Mean>> verify_;  // [bucket][K]
  std::vector<Mean> draft_;                // [bucket]
  Mean hops_;
};

class AcceptanceEstimator {
 public:
  explicit AcceptanceEstimator(double decay = 0.9, double prior_alpha = 0.6, double prior_weight = 2)
      : decay_(decay), accepted_(prior_alpha * prior_weight), rejected_((1 - prior_alpha) * prior_weight) {}
  // One round: k proposed, n accepted (a rejection happened iff n < k).
  void observe(int64_t k, int64_t n);
  // Maximum-likelihood alpha of a geometric run length: accepted / (accepted + rejections).
  double alpha() const { return accepted_ / (accepted_ + rejected_); }
  // The k in [0, k_max] with the largest expected speedup at cost ratio c.
  int64_t choose(int64_t k_max, double c);
  // The k in [0, k_max] with the most expected tokens per millisecond, round_ms_by_k[k] being
  // the price of a round with k draft tokens (RoundCosts::round_table, k_max = its size - 1):
  // (1 - alpha^(k+1)) / (1 - alpha) / round_ms_by_k[k].
  int64_t choose(const std::vector<double>& round_ms_by_k);
  int64_t choose(const RoundCosts& costs, int64_t batch) {
    return choose(costs.round_table(batch));
  }

 private:
  int64_t pick(int64_t best, int64_t k_max);  // the probe at k = 0
  double decay_;
  double accepted_, rejected_;
  int64_t rounds_at_zero_ = 0;
};

}  // namespace osd
