#pragma once
// Adaptive draft length. With per-token acceptance alpha and cost ratio c (one draft step / one
// target step), a round with k draft tokens emits (1 - alpha^(k+1)) / (1 - alpha) tokens on
// average and costs k*c + 1 target steps, so the expected speedup over plain decoding is
//   S(k) = (1 - alpha^(k+1)) / ((1 - alpha) (k c + 1)),   S(0) = 1.
// Each sequence keeps a decayed estimate of alpha from its own rounds and picks the k in
// [0, k_max] that maximises S. At k = 0 it learns nothing, so it probes with k = 1 every
// `probe_every` rounds.
#include <cstdint>

namespace osd {

double expected_speedup(double alpha, int64_t k, double c);
double expected_tokens_per_round(double alpha, int64_t k);

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

 private:
  double decay_;
  double accepted_, rejected_;
  int64_t rounds_at_zero_ = 0;
};

}  // namespace osd
