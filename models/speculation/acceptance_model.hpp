#pragma once
// How many tokens a round is expected to emit with k draft tokens, from the acceptance measured
// per draft position.
//
// rate(j) is the probability that draft token j is accepted given that tokens 1..j-1 were: a
// decayed Beta estimate per position. A round with k draft tokens emits
//   E(k) = 1 + sum_{j=1..k} prod_{m=1..j} rate(m)
// tokens on average (the recovered or bonus token, plus the accepted run). With one rate alpha
// at every position this is the paper's (1 - alpha^(k+1)) / (1 - alpha).
//
// Estimates nest: a sequence's model is its own decayed counts on top of its route's model
// (counts over every sequence of the route, for the current draft version) as a prior of
// `prior_weight` pseudo-rounds, and the route's model sits on a fixed prior (or, after a new
// draft version, on the acceptance its distiller measured on held-out requests). No torch.
#include <cstdint>
#include <vector>

namespace osd {

// The paper's formulas with one acceptance alpha at every position: tokens a round with k draft
// tokens emits, (1 - alpha^(k+1)) / (1 - alpha), and the speedup over plain decoding at cost
// ratio c (a draft step over a target step), that over (k c + 1).
double expected_tokens_per_round(double alpha, int64_t k);
double expected_speedup(double alpha, int64_t k, double c);

class AcceptanceModel {
 public:
  // k_max: positions tracked; decay: weight of the past per observed round; prior_alpha and
  // prior_weight: the rate at every position before any round, worth prior_weight rounds.
  explicit AcceptanceModel(int64_t k_max = 8, double decay = 0.95, double prior_alpha = 0.6,
                           double prior_weight = 2.0);

  // One round that proposed k draft tokens and accepted the leading n (0 <= n <= k): positions
  // 1..n were accepted, position n + 1 (when n < k) was rejected, the rest were not reached.
  void observe(int64_t k, int64_t n);
  // P(accept position j | 1..j-1 accepted), j in 1..k_max, with the prior (or `parent`) mixed in.
  double rate(int64_t j, const AcceptanceModel* parent = nullptr) const;
  // E(k) for k = 0..k_max (E(0) = 1).
  std::vector<double> expected_tokens(const AcceptanceModel* parent = nullptr) const;
  // The geometric model's alpha fitted to the counts: accepted / (accepted + rejections).
  double alpha(const AcceptanceModel* parent = nullptr) const;
  // Forget the counts and start again from `alpha` at every position (a new draft version).
  void reset(double prior_alpha);
  // Rounds observed, decayed.
  double weight() const { return rounds_; }
  int64_t k_max() const { return static_cast<int64_t>(accepted_.size()); }

 private:
  double decay_, prior_alpha_, prior_weight_;
  std::vector<double> accepted_;  // [j - 1]: decayed rounds whose token j was accepted
  std::vector<double> reached_;   // [j - 1]: decayed rounds that proposed token j after j - 1 accepts
  double rounds_ = 0;
};

}  // namespace osd
