#pragma once
// Random *structured* model pairs for the CPU benchmarks: the target draws most of its output
// from its embedding and first layers, deeper layers add a perturbation of size depth_std; a
// "truncated copy" draft (the target's first layers) then agrees often, an unrelated random
// draft of the same shape rarely.
#include <memory>

#include "models/core/transformer.hpp"

namespace osd::bench {

struct PairShape {
  int64_t vocab = 4096, hidden = 384, layers = 12, draft_layers = 1;
};

ModelConfig shape(const PairShape& s, int64_t layers);
void structure(Transformer& m, uint64_t seed, int64_t lead, double depth_std);
std::shared_ptr<Transformer> truncated_copy(Transformer& target, const ModelConfig& cfg);

}  // namespace osd::bench
