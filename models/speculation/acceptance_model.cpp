#include "models/speculation/acceptance_model.hpp"

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

AcceptanceModel::AcceptanceModel(int64_t k_max, double decay, double prior_alpha,
                                 double prior_weight)
    : decay_(decay),
      prior_alpha_(std::clamp(prior_alpha, 0.0, 1.0)),
      prior_weight_(std::max(prior_weight, 1e-9)),
      accepted_(std::max<int64_t>(k_max, 0), 0.0),
      reached_(std::max<int64_t>(k_max, 0), 0.0) {}

void AcceptanceModel::observe(int64_t k, int64_t n) {
  if (k <= 0) return;
  k = std::min<int64_t>(k, k_max());
  n = std::clamp<int64_t>(n, 0, k);
  for (size_t j = 0; j < accepted_.size(); ++j) accepted_[j] *= decay_, reached_[j] *= decay_;
  rounds_ = rounds_ * decay_ + 1.0;
  // Positions 1..n accepted; position n + 1 reached and rejected; beyond it, not reached.
  for (int64_t j = 0; j < std::min(n + 1, k); ++j) {
    reached_[j] += 1.0;
    if (j < n) accepted_[j] += 1.0;
  }
}

double AcceptanceModel::rate(int64_t j, const AcceptanceModel* parent) const {
  if (j < 1 || j > k_max()) return 0.0;
  const double prior = parent ? parent->rate(j) : prior_alpha_;
  const size_t i = static_cast<size_t>(j - 1);
  return (accepted_[i] + prior_weight_ * prior) / (reached_[i] + prior_weight_);
}

std::vector<double> AcceptanceModel::expected_tokens(const AcceptanceModel* parent) const {
  std::vector<double> e(accepted_.size() + 1, 1.0);
  double run = 1.0;  // P(tokens 1..j all accepted)
  for (int64_t j = 1; j <= k_max(); ++j) {
    run *= rate(j, parent);
    e[j] = e[j - 1] + run;
  }
  return e;
}

double AcceptanceModel::alpha(const AcceptanceModel* parent) const {
  // Accepted over accepted + rejections, with each position's prior mixed in.
  double acc = 0, rej = 0;
  for (int64_t j = 1; j <= k_max(); ++j) {
    const double r = rate(j, parent);
    const double n = reached_[j - 1] + prior_weight_;
    acc += r * n;
    rej += (1 - r) * n;
  }
  return acc + rej > 0 ? acc / (acc + rej) : prior_alpha_;
}

void AcceptanceModel::reset(double prior_alpha) {
  prior_alpha_ = std::clamp(prior_alpha, 0.0, 1.0);
  std::fill(accepted_.begin(), accepted_.end(), 0.0);
  std::fill(reached_.begin(), reached_.end(), 0.0);
  rounds_ = 0;
}

}  // namespace osd
