#include "models/speculation/adaptive_k.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

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
  return pick(best, k_max);
}

int64_t AcceptanceEstimator::choose(const std::vector<double>& round_ms_by_k) {
  const double a = std::clamp(alpha(), 0.0, 0.999);
  const int64_t k_max = static_cast<int64_t>(round_ms_by_k.size()) - 1;
  int64_t best = 0;
  double best_rate = expected_tokens_per_round(a, 0) / round_ms_by_k[0];
  for (int64_t k = 1; k <= k_max; ++k) {
    const double rate = expected_tokens_per_round(a, k) / round_ms_by_k[k];
    if (rate > best_rate * 1.0001) best = k, best_rate = rate;
  }
  return pick(best, k_max);
}

int64_t AcceptanceEstimator::pick(int64_t best, int64_t k_max) {
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

// Priors before anything is measured: a plain step of 1 ms, a draft step of 0.1 ms (c = 0.1, the
// fixed-c chooser's prior), no hops.
RoundCosts::RoundCosts(int64_t k_max, double decay)
    : k_max_(std::max<int64_t>(0, k_max)),
      decay_(decay),
      verify_(5, std::vector<Mean>(k_max_ + 1)),
      draft_(5) {}

int RoundCosts::bucket(int64_t batch) {
  int b = 0;
  for (int64_t n = std::max<int64_t>(1, batch); n > 1 && b < 4; n /= 2) ++b;
  return b;  // 1 -> 0, 2-3 -> 1, 4-7 -> 2, 8-15 -> 3, 16+ -> 4
}

void RoundCosts::update(Mean& m, double x) const {
  if (!(x >= 0) || !std::isfinite(x)) return;
  m.value = m.seen ? decay_ * m.value + (1 - decay_) * x : x;
  m.seen = true;
}

void RoundCosts::observe_draft_step(int64_t batch, double ms) {
  update(draft_[bucket(batch)], ms);
}

void RoundCosts::observe_verify(int64_t batch, int64_t K, double ms) {
  if (K < 0 || K > k_max_) return;
  update(verify_[bucket(batch)][K], ms);
}

void RoundCosts::observe_hops(double ms) {
  update(hops_, ms);
}

std::vector<double> RoundCosts::verify_table(int64_t batch) const {
  const auto& v = verify_[bucket(batch)];
  std::vector<int64_t> seen;
  for (int64_t j = 0; j <= k_max_; ++j)
    if (v[j].seen) seen.push_back(j);
  // A K seen is its mean; another is interpolated between the nearest seen on each side, else
  // extrapolated along the two nearest (never downward), or flat from the one seen.
  auto estimate = [&](int64_t K) {
    if (v[K].seen) return v[K].value;
    if (seen.empty()) return 1.0;
    if (seen.size() == 1) return v[seen[0]].value;
    auto hi = std::lower_bound(seen.begin(), seen.end(), K);
    int64_t a, b;
    if (hi == seen.begin())
      a = seen[0], b = seen[1];
    else if (hi == seen.end())
      a = seen[seen.size() - 2], b = seen.back();
    else
      a = *(hi - 1), b = *hi;
    const double slope = (v[b].value - v[a].value) / static_cast<double>(b - a);
    const double rising = std::max(0.0, slope);
    if (K > b) return v[b].value + rising * static_cast<double>(K - b);
    if (K < a) return std::max(0.0, v[a].value - rising * static_cast<double>(a - K));
    return v[a].value + slope * static_cast<double>(K - a);
  };
  // A verification of more tokens never costs less than one of fewer: noisy means can slope down
  // (a plain round that also finished requests looked dearer than a drafting one), and a longer
  // proposal must not look free, nor drafting look cheaper than a plain step.
  std::vector<double> out(k_max_ + 1);
  double most = 0;
  for (int64_t K = 0; K <= k_max_; ++K) out[K] = most = std::max(most, estimate(K));
  return out;
}

std::vector<double> RoundCosts::round_table(int64_t batch) const {
  auto out = verify_table(batch);
  const double plain = out[0];
  const auto& d = draft_[bucket(batch)];
  const double draft = d.seen ? d.value : 0.1 * plain, hops = hops_.seen ? hops_.value : 0.0;
  for (int64_t K = 1; K <= k_max_; ++K) out[K] += static_cast<double>(K) * draft + hops;
  return out;
}

double RoundCosts::verify_ms(int64_t batch, int64_t K) const {
  return verify_table(batch)[std::clamp<int64_t>(K, 0, k_max_)];
}

double RoundCosts::round_ms(int64_t batch, int64_t K) const {
  return round_table(batch)[std::clamp<int64_t>(K, 0, k_max_)];
}

double RoundCosts::cost_ratio(int64_t batch) const {
  const auto& d = draft_[bucket(batch)];
  const double plain = verify_table(batch)[0];
  return d.seen ? d.value / std::max(plain, std::numeric_limits<double>::min()) : 0.1;
}

}  // namespace osd
