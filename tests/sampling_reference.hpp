#pragma once
// The sampling distribution of one row of logits, written out in double and independently of
// models/speculation/sampling.cpp (processed_probs), so that tests of the sampler and of
// speculative sampling compare against a reference that does not share their code.
//
//   temperature 0     one-hot at the largest logit (the lowest token id among equal ones)
//   temperature T     p_i = exp(l_i / T - max) / sum_j exp(l_j / T - max)
//   top-k (k > 0)     keep the k most likely tokens
//   top-p (p < 1)     walking the kept tokens by decreasing probability, keep a token while the
//                     mass of the tokens before it is below p: the smallest set whose mass
//                     reaches p (p = 1 keeps every token; a tiny p keeps the most likely one)
//   renormalise over the kept tokens.
// Ties are walked in token-id order (a stable sort), so equal tokens at the top-k or top-p cut
// are kept lowest id first; processed_probs sorts without that guarantee, so tests compare the
// two at a tied cut through the kept mass and the number of kept tokens, not the ids.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <vector>

namespace osd::test {

struct ReferenceSampling {
  double temperature = 1.0;
  int64_t top_k = 0;
  double top_p = 1.0;
};

inline std::vector<double> reference_probs(const std::vector<double>& logits,
                                           const ReferenceSampling& s) {
  const size_t V = logits.size();
  std::vector<double> probs(V, 0.0);
  if (V == 0) return probs;
  if (s.temperature == 0.0) {
    probs[std::max_element(logits.begin(), logits.end()) - logits.begin()] = 1.0;
    return probs;
  }
  const double top = *std::max_element(logits.begin(), logits.end());
  double z = 0;
  for (size_t i = 0; i < V; ++i) z += probs[i] = std::exp((logits[i] - top) / s.temperature);
  for (auto& p : probs) p /= z;
  std::vector<size_t> order(V);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return probs[a] > probs[b]; });
  const size_t k = s.top_k > 0 ? std::min<size_t>(static_cast<size_t>(s.top_k), V) : V;
  double mass_k = 0;  // the top-k renormalised before top-p, as a k-token distribution
  for (size_t r = 0; r < k; ++r) mass_k += probs[order[r]];
  std::vector<char> keep(V, 0);
  double before = 0, kept = 0;
  for (size_t r = 0; r < k; ++r) {
    if (s.top_p < 1.0 && before >= s.top_p) break;
    keep[order[r]] = 1;
    before += probs[order[r]] / mass_k;
    kept += probs[order[r]];
  }
  for (size_t i = 0; i < V; ++i) probs[i] = keep[i] ? probs[i] / kept : 0.0;
  return probs;
}

}  // namespace osd::test
