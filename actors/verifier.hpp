#pragma once
// verifier: owns the target model and its TargetScorer; runs continuous batching.
//
// Sequences are split into groups (two by default). Each group cycles
//   propose (drafter) -> score + verify (here) -> commit (both sides) -> propose ...
// so while the verifier scores one group, the drafter proposes for the other. Sequences join a
// group between its rounds and leave when they finish or are cancelled.
//   (admit_atom, Submission, sink)   sink receives TokenEvent* and exactly one DoneEvent
//   (cancel_atom, RequestId)
//   (stats_atom)                     -> std::string (JSON: in flight, waiting, idle fraction)
#include <caf/fwd.hpp>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

namespace osd {

class Transformer;

struct VerifierOptions {
  int64_t num_slots = 64;       // sequences in flight
  int64_t max_len = 2048;       // KV cache positions per sequence
  int64_t groups = 2;           // groups in flight (>= 2 overlaps drafting with verification)
  int64_t k = 4;                // fixed draft length
  bool adaptive_k = true;
  int64_t k_max = 8;
  std::function<std::string(int64_t)> token_text;  // detokenizer piece; empty: no text
};

// drafter may be invalid: target-only decoding. intake gets (release_atom, id) per finished
// request; metrics gets RoundMetrics per round.
caf::actor spawn_verifier(caf::actor_system& sys, std::shared_ptr<Transformer> target, caf::actor drafter,
                          caf::actor intake, caf::actor metrics, VerifierOptions opt);

}  // namespace osd
