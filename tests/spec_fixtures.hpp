#pragma once
// Models for the speculative decoding tests: peaked random models (so that sampling and the
// accept rule have something to get wrong), drafts that are perturbed copies of the target or
// unrelated, and target-only greedy decoding by full forwards (independent of the KV cache).
#include "tests/test_common.hpp"

#include "models/core/transformer.hpp"

#include <random>

namespace osd::test {

inline ModelConfig tiny_config(int64_t vocab, int64_t hidden, int64_t layers) {
  ModelConfig c = *ModelConfig::preset("tiny");
  c.vocab_size = vocab;
  c.hidden_size = hidden;
  c.intermediate_size = hidden * 2;
  c.num_layers = layers;
  c.num_heads = 4;
  c.num_kv_heads = 2;
  c.head_dim = 0;
  return c.finalize();
}

// Random weights with a larger spread than HF's init, so next-token distributions are peaked.
inline std::shared_ptr<Transformer> peaked_model(const ModelConfig& c, uint64_t seed, double std = 0.25) {
  auto m = std::make_shared<Transformer>(c, seed);
  torch::NoGradGuard g;
  auto gen = at::detail::createCPUGenerator(seed + 1000);
  for (auto& p : m->named_parameters())
    if (p.value().dim() == 2) p.value().copy_(at::normal(0.0, std, p.value().sizes(), gen));
  return m;
}

// A copy of `target` with Gaussian noise of the given std on every matrix: a good draft.
inline std::shared_ptr<Transformer> perturbed_copy(Transformer& target, uint64_t seed, double noise) {
  auto d = std::make_shared<Transformer>(target.config(), seed);
  torch::NoGradGuard g;
  auto gen = at::detail::createCPUGenerator(seed);
  auto src = target.named_parameters();
  for (auto& p : d->named_parameters()) {
    auto& s = src[p.key()];
    p.value().copy_(s + (s.dim() == 2 ? at::normal(0.0, noise, s.sizes(), gen) : torch::zeros_like(s)));
  }
  return d;
}

// Target-only greedy decoding with one full forward per token (no KV cache involved).
inline std::vector<int64_t> greedy_reference(Transformer& m, std::vector<int64_t> seq, int64_t n,
                                             const std::vector<int64_t>& eos = {}) {
  std::vector<int64_t> out;
  for (int64_t i = 0; i < n; ++i) {
    auto logits = m.forward_full(torch::tensor(seq).view({1, -1}));
    int64_t t = logits[0][-1].argmax().item<int64_t>();
    out.push_back(t);
    seq.push_back(t);
    if (std::find(eos.begin(), eos.end(), t) != eos.end()) break;
  }
  return out;
}

// The smallest gap between the target's top-2 logits along a greedy trajectory. Greedy output
// is exactly defined only where this gap exceeds float rounding (batched and single forwards
// differ by ~1e-6): tests draw prompts whose trajectories keep a margin.
inline double min_top2_gap(Transformer& m, std::vector<int64_t> prompt, const std::vector<int64_t>& greedy) {
  prompt.insert(prompt.end(), greedy.begin(), greedy.end());
  auto logits = m.forward_full(torch::tensor(prompt).view({1, -1}))[0];                 // [T, V]
  const int64_t first = static_cast<int64_t>(prompt.size() - greedy.size()) - 1;
  auto top = std::get<0>(logits.narrow(0, first, greedy.size()).topk(2, -1));          // [n, 2]
  return (top.select(1, 0) - top.select(1, 1)).min().item<double>();
}

// Random prompts (lengths 1..max_len) whose greedy trajectories of n tokens keep a top-2 logit
// margin of at least 1e-4, with their reference outputs.
inline std::pair<std::vector<std::vector<int64_t>>, std::vector<std::vector<int64_t>>> greedy_cases(
    Transformer& m, int count, int max_len, int64_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<std::vector<int64_t>> prompts, refs;
  const int64_t V = m.config().vocab_size;
  while (static_cast<int>(prompts.size()) < count) {
    std::vector<int64_t> p(1 + rng() % max_len);
    for (auto& t : p) t = static_cast<int64_t>(rng() % V);
    auto ref = greedy_reference(m, p, n);
    if (min_top2_gap(m, p, ref) < 1e-4) continue;
    prompts.push_back(p);
    refs.push_back(ref);
  }
  return {prompts, refs};
}

}  // namespace osd::test
