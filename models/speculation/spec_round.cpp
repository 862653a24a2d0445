#include "models/speculation/spec_round.hpp"

#include <torch/torch.h>

namespace osd {

SpecRound run_spec_round(TargetScorer& scorer, const Proposals& prop,
                         const std::vector<SamplingParams>& params, bool keep_logits,
                         AcceptRule rule) {
  SpecRound r;
  for (auto id : prop.ids) r.positions.push_back(scorer.length(id));
  const size_t graphs_before = scorer.graphs_captured();
  r.logits = scorer.score(prop);  // [B, K + 1, V]
  r.captured_graph = scorer.graphs_captured() != graphs_before;
  if (keep_logits) r.logits_copy = r.logits.reshape({-1, r.logits.size(2)}).clone();
  r.verified = verify_round(prop, r.logits, params, r.positions, rule);  // the host sync
  for (const auto& v : r.verified.verdicts) scorer.commit(v);
  return r;
}

}  // namespace osd
