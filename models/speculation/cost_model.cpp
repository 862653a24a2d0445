#include "models/speculation/cost_model.hpp"

#include <algorithm>
#include <cmath>

namespace osd {

RoundCostModel::RoundCostModel(int64_t k_max, double decay)
    : k_max_(std::max<int64_t>(0, k_max)),
      decay_(decay),
      verify_(kBuckets, std::vector<Mean>(k_max_ + 1)),
      draft_(kBuckets) {}

int RoundCostModel::bucket(int64_t batch) {
  int b = 0;
  for (int64_t n = std::max<int64_t>(1, batch); n > 1 && b < kBuckets - 1; n /= 2) ++b;
  return b;
}

void RoundCostModel::update(Mean& m, double x) const {
  if (!(x >= 0) || !std::isfinite(x)) return;
  m.value = m.seen ? decay_ * m.value + (1 - decay_) * x : x;
  m.seen = true;
}

void RoundCostModel::observe_verify(int64_t batch, int64_t K, double ms) {
  if (K < 0 || K > k_max_) return;
  update(verify_[bucket(batch)][K], ms);
}

void RoundCostModel::observe_draft_step(int64_t rows, double ms) { update(draft_[bucket(rows)], ms); }

void RoundCostModel::observe_hops(double ms) { update(hops_, ms); }

void RoundCostModel::observe_catch_up(int64_t tokens, double ms) {
  if (tokens > 0) update(catch_up_, ms / static_cast<double>(tokens));
}

double RoundCostModel::catch_up_ms_per_token() const {
  return catch_up_.seen ? catch_up_.value : 0.1 * draft_step_ms(1);
}

std::vector<double> RoundCostModel::bucket_table(int b) const {
  const auto& v = verify_[b];
  std::vector<int64_t> seen;
  for (int64_t j = 0; j <= k_max_; ++j)
    if (v[j].seen) seen.push_back(j);
  if (seen.empty()) return {};
  auto estimate = [&](int64_t K) {
    if (v[K].seen) return v[K].value;
    // Below the shortest measured: as if the cost were proportional to the tokens (the cheapest a
    // shorter pass can plausibly be), so the planner tries it and its price is then measured.
    if (K < seen.front())
      return v[seen.front()].value * static_cast<double>(K + 1) / static_cast<double>(seen.front() + 1);
    // Above the longest measured: flat (optimistic), or along the two longest measured.
    if (K > seen.back()) {
      if (seen.size() == 1) return v[seen.back()].value;
      const int64_t a = seen[seen.size() - 2], c = seen.back();
      const double rising = std::max(0.0, (v[c].value - v[a].value) / static_cast<double>(c - a));
      return v[c].value + rising * static_cast<double>(K - c);
    }
    auto hi = std::lower_bound(seen.begin(), seen.end(), K);
    const int64_t a = *(hi - 1), c = *hi;
    return v[a].value + (v[c].value - v[a].value) * static_cast<double>(K - a) / static_cast<double>(c - a);
  };
  // A verification of more tokens never costs less than one of fewer: noisy means can slope down,
  // and a longer proposal must not look free, nor drafting look cheaper than a plain step.
  std::vector<double> out(k_max_ + 1);
  double most = 0;
  for (int64_t K = 0; K <= k_max_; ++K) out[K] = most = std::max(most, estimate(K));
  return out;
}

std::vector<double> RoundCostModel::verify_table(int64_t batch) const {
  const int b = bucket(batch);
  auto own = bucket_table(b);
  if (!own.empty() && verify_[b][k_max_].seen) return own;
  // Borrow the shape of the nearest bucket that measured a longer verification, scaled to this
  // bucket's plain step.
  auto longest = [&](int c) {
    int64_t K = -1;
    for (int64_t j = 0; j <= k_max_; ++j)
      if (verify_[c][j].seen) K = j;
    return K;
  };
  const int64_t mine = longest(b);
  int nearest = -1;
  for (int d = 1; d < kBuckets && nearest < 0; ++d)
    for (int c : {b - d, b + d})
      if (c >= 0 && c < kBuckets && longest(c) > mine) {
        nearest = c;
        break;
      }
  if (nearest < 0) return own.empty() ? std::vector<double>(k_max_ + 1, 1.0) : own;
  auto other = bucket_table(nearest);
  if (own.empty()) return other;
  // Where this bucket measured a K, its value stands; elsewhere the other's ratio to its plain step.
  const double scale = own[0] / std::max(other[0], 1e-9);
  std::vector<double> out(k_max_ + 1);
  double most = 0;
  for (int64_t K = 0; K <= k_max_; ++K) {
    const double x = verify_[b][K].seen ? verify_[b][K].value : other[K] * scale;
    out[K] = most = std::max(most, x);
  }
  return out;
}

double RoundCostModel::verify_ms(int64_t batch, int64_t K) const {
  return verify_table(batch)[std::clamp<int64_t>(K, 0, k_max_)];
}

double RoundCostModel::draft_step_ms(int64_t rows) const {
  const auto& d = draft_[bucket(rows)];
  if (d.seen) return d.value;
  for (int dist = 1; dist < kBuckets; ++dist)
    for (int c : {bucket(rows) - dist, bucket(rows) + dist})
      if (c >= 0 && c < kBuckets && draft_[c].seen) return draft_[c].value;
  return 0.1 * verify_ms(rows, 0);
}

double RoundCostModel::round_ms(int64_t batch, int64_t K, int64_t drafting_rows) const {
  const double v = verify_ms(batch, K);
  if (K <= 0 || drafting_rows <= 0) return v;
  return v + static_cast<double>(K) * draft_step_ms(drafting_rows) + hops_ms();
}

}  // namespace osd
