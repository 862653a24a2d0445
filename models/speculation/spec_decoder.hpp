#pragma once
// Speculative decoding in one synchronous loop: plan -> propose -> score -> verify -> roll back.
// It composes the roles (goodput planner, DraftProposer, the shared round of spec_round.hpp,
// StopChecker, AcceptanceModel) for a batch of sequences that join and leave between rounds. The
// actors split the same roles across a drafter and a verifier and run the same round
// (run_spec_round); this loop is the reference they are tested against, and what osd-bench spec
// times.
#include <ATen/core/Tensor.h>

#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <vector>

#include "models/speculation/acceptance_model.hpp"
#include "models/speculation/cost_model.hpp"
#include "models/speculation/goodput_planner.hpp"
#include "models/speculation/proposer.hpp"
#include "models/speculation/spec_round.hpp"
#include "models/speculation/stop_conditions.hpp"

namespace osd {

struct SpecOptions {
  int64_t max_batch = 16;       // sequences in flight (KV cache slots of each model)
  int64_t max_len = 1024;       // KV cache positions per sequence
  int64_t k = 4;                // draft tokens per round (fixed mode)
  bool adaptive_k = false;      // k per sequence by the goodput planner (goodput_planner.hpp)
  int64_t k_max = 8;            // upper bound for adaptive k
  // c = draft step / target step for the planner: < 0: every cost measured while running; >= 0:
  // a fixed price list (verification flat in k at 1, draft steps at c).
  double cost_ratio = -1;
  AcceptRule rule = AcceptRule::exact;  // tests only: the broken rules are controls
};

struct SequenceOutput {
  SeqId id = 0;
  std::vector<int64_t> tokens;  // generated tokens (prompt excluded)
  std::string text;             // decoded text when a TokenText was given
  FinishReason finish = FinishReason::none;
  SpecStats stats;
};

struct RoundResult {
  std::vector<Verdict> verdicts;                 // one per sequence of the round
  std::vector<std::vector<int64_t>> kept;        // per verdict: emitted tokens kept after stops
  std::vector<SeqId> finished;                   // sequences that finished this round
  at::Tensor target_logits;                      // [B, K + 1, V] raw logits of every verified position
  at::Tensor
      target_probs;  // [B, K + 1, V] processed p the rule used (undefined when every row is greedy)
  double draft_seconds = 0, target_seconds = 0;
};

class SpecDecoder {
 public:
  // draft may be null: plain target-only decoding through the same path (k = 0).
  SpecDecoder(std::shared_ptr<Transformer> target, std::shared_ptr<Transformer> draft,
              SpecOptions options, TokenText token_text = {});

  // Validates and prefills. Throws osd::Error (nothing changed) on bad input or no free slot.
  void add(SeqId id, const GenerationRequest& request);
  bool can_add() const { return scorer_.free_slots() > 0; }
  void cancel(SeqId id);
  // One round over every active sequence. Finished sequences are moved to the outputs.
  RoundResult step();
  bool idle() const { return active_.empty(); }
  std::optional<SequenceOutput> take(SeqId id);
  // Runs the requests to completion, admitting them as slots free up; outputs in request order.
  std::vector<SequenceOutput> generate(const std::vector<GenerationRequest>& requests);

  double cost_ratio() const { return cost_ratio_; }
  const SpecStats& total_stats() const { return total_; }
  double draft_seconds() const { return draft_seconds_; }
  double target_seconds() const { return target_seconds_; }
  DraftProposer* proposer() { return draft_ ? &*draft_ : nullptr; }

 private:
  struct Active {
    GenerationRequest request;
    StopChecker stop;
    AcceptanceModel acceptance;
    SequenceOutput out;
  };
  std::vector<int64_t> choose_k(const std::vector<SeqId>& ids, const std::vector<Active*>& rows);
  void finish(SeqId id, FinishReason reason);

  std::shared_ptr<Transformer> target_;
  SpecOptions opt_;
  TokenText token_text_;
  TargetScorer scorer_;
  std::optional<DraftProposer> draft_;
  std::map<SeqId, Active> active_;
  std::map<SeqId, SequenceOutput> done_;
  SpecStats total_;
  RoundCostModel costs_;
  AcceptanceModel route_acceptance_;  // every sequence's rounds: the prior of a new one
  double cost_ratio_ = 0.1;
  bool cost_measured_ = false;
  double draft_seconds_ = 0, target_seconds_ = 0;
};

}  // namespace osd
