#include "models/adaptive_k.hpp"

#include <algorithm>
#include <cmath>

namespace osd {

double expected_tokens_per_round(double alpha, int64_t k) {
  if (alpha >= 1.0) return static_cast<double>(k + 1);
  return (1.0 - std::pow(alpha, static_cast<double>(k + 1))) / (1.0 - alpha);
}

double expected_speedup(double alpha, int64_t k, double c) {
  return expected_tokens_per_round(alpha, k) / (static_cast<double>(k) * c + 1.0);
}

void AcceptanceEstimator::observe(int64_t k, int64_t n) {
  if (k <= 0) return;
  accepted_ = decay_ * accepted_ + static_cast<double>(n);
  rejected_ = decay_ * rejected_ + (n < k ? 1.0 : 0.0);
}

int64_t AcceptanceEstimator::choose(int64_t k_max, double c) {
  const double a = std::clamp(alpha(), 0.0, 0.999);
  int64_t best = 0;
  double best_s = 1.0;
  for (int64_t k = 1; k <= k_max; ++k) {
    double s = expected_speedup(a, k, c);
    if (s > best_s * 1.0001) best = k, best_s = s;
  }
  if (best == 0 && k_max > 0) {
    if (++rounds_at_zero_ >= 16) {  // probe: otherwise alpha could never recover
      rounds_at_zero_ = 0;
      return 1;
    }
  } else {
    rounds_at_zero_ = 0;
  }
  return best;
}

}  // namespace osd
