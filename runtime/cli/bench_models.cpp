#include "runtime/cli/bench_models.hpp"

#include <torch/torch.h>

#include <cmath>

namespace osd::bench {

ModelConfig shape(const PairShape& s, int64_t layers) {
  ModelConfig c;
  c.name = "bench";
  c.vocab_size = s.vocab;
  c.hidden_size = s.hidden;
  c.intermediate_size = s.hidden * 8 / 3 / 64 * 64;
  c.num_layers = layers;
  c.num_heads = s.hidden / 64;
  c.num_kv_heads = c.num_heads;
  c.head_dim = 0;
  return c.finalize();
}

// Random weights with structure: the embedding and the first `lead` layers decide most of the
// output; deeper layers add a perturbation of size `depth_std`. A draft made of the target's
// first layers then agrees often (a "perturbed copy"), a random draft rarely.
void structure(Transformer& m, uint64_t seed, int64_t lead, double depth_std) {
  torch::NoGradGuard g;
  auto gen = at::detail::createCPUGenerator(seed);
  const double emb_std = 3.0 / std::sqrt(static_cast<double>(m.config().hidden_size));
  m.embed_tokens().copy_(at::normal(0.0, emb_std, m.embed_tokens().sizes(), gen));
  if (!m.config().tie_word_embeddings) m.lm_head().copy_(at::normal(0.0, emb_std, m.lm_head().sizes(), gen));
  for (int64_t l = 0; l < m.config().num_layers; ++l) {
    auto& w = m.layers()[l];
    const double s = l < lead ? 0.08 : depth_std;
    for (auto* t : {&w.wqkv, &w.wo, &w.w_gate_up, &w.w_down}) t->copy_(at::normal(0.0, s, t->sizes(), gen));
  }
}

std::shared_ptr<Transformer> truncated_copy(Transformer& target, const ModelConfig& cfg) {
  auto d = std::make_shared<Transformer>(cfg, 0);
  torch::NoGradGuard g;
  d->embed_tokens().copy_(target.embed_tokens());
  d->lm_head().copy_(target.lm_head());
  d->final_norm().copy_(target.final_norm());
  for (int64_t l = 0; l < cfg.num_layers; ++l) {
    auto &dst = d->layers()[l], &src = target.layers()[l];
    for (auto [a, b] : {std::pair{&dst.wqkv, &src.wqkv}, {&dst.wo, &src.wo}, {&dst.w_gate_up, &src.w_gate_up},
                        {&dst.w_down, &src.w_down}, {&dst.attn_norm, &src.attn_norm}, {&dst.mlp_norm, &src.mlp_norm}})
      a->copy_(*b);
  }
  return d;
}

}  // namespace osd::bench
