#pragma once
// verifier: owns the target model and its TargetScorer; runs continuous batching.
//
// Sequences are split into groups (two per draft route by default). Each group cycles
//   propose (drafter) -> score + verify (here) -> commit (both sides) -> propose ...
// so while the verifier scores one group, the drafter proposes for the other. Sequences join a
// group between its rounds and leave when they finish or are cancelled.
//
// Supervision: the verifier monitors the drafter. When it dies (or a proposal fails) a new one
// is spawned and every live sequence is re-added with its tokens so far; the failed rounds run
// again. When a verification round throws, the group's sequences are rebuilt in both caches
// from their tokens so far and the round is retried. Either way no request is lost and none is
// answered twice (the verifier alone answers).
//   (admit_atom, Submission, sink)   sink receives TokenEvent* and exactly one DoneEvent
//   (cancel_atom, RequestId)
//   (stats_atom)                     -> std::string (JSON: in flight, waiting, idle fraction)
//   (trace_atom)                     -> std::string (Chrome trace JSON of recorded rounds)
#include <caf/fwd.hpp>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace osd {

class Transformer;

struct VerifierOptions {
  int64_t num_slots = 64;       // sequences in flight
  int64_t max_len = 2048;       // KV cache positions per sequence
  int64_t groups = 2;           // groups in flight (>= 2 overlaps drafting with verification)
  int64_t k = 4;                // fixed draft length
  bool adaptive_k = true;
  int64_t k_max = 8;
  bool measured_costs = false;  // adaptive k by RoundCosts, not the formula's one ratio c
  std::function<std::string(int64_t)> token_text;  // detokenizer piece; empty: no text
  // Per-sequence text (a stream decoder with the prompt as context); wins over token_text.
  std::function<std::function<std::string(int64_t)>(const std::vector<int64_t>& prompt)> text_stream;
  // Spawns a fresh drafter for a route with the given weights (null: the route's original
  // draft) and version when the running one dies.
  std::function<caf::actor(int64_t route, std::shared_ptr<const Transformer>, int64_t version)> drafter_factory;
  std::vector<std::string> route_names;  // one per drafter
  std::vector<int64_t> draft_versions;   // per route, at start
  // Online distillation: which verified positions go to the buffer, and how compactly.
  bool record_all_positions = false;  // false: only the position of the first rejection
  int64_t record_top_k = 64;          // 0: full distributions
  // Also the target's distributions at the last this-many prompt positions, from the prefill it
  // runs anyway (0: none). They go to the buffer after the request's first round.
  int64_t record_prompt_positions = 0;
  int64_t fail_on_round = -1;   // tests: throw inside this verification round (1-based)
  int64_t max_round_retries = 3;  // a round that keeps failing fails its requests
  bool trace = false;             // record per-round draft / verify intervals (trace_atom)
  // CUDA: verify on the GPU's multiprocessors outside the distillers' share of this many (the
  // rest of their green-context split); 0: the whole GPU.
  int beside_multiprocessors = 0;
  // CUDA: build the attention plans of every prefill shape on this actor's thread before serving
  // (Transformer::warm_attention_plans).
  bool warm_attention_plans = true;
};

// drafters: one per draft route (empty: target-only decoding). Each route has its own groups,
// so a verification round uses one drafter. Each final answer goes through the intake
// (release_atom, DoneEvent, sink), which frees the id and forwards it (no intake: to the sink);
// metrics gets RoundMetrics per round; buffers[r] (may be empty or invalid) gets the target's
// distributions at route r's verified positions.
//   (swap_atom, WeightsSnapshot)   new weights of snapshot.route: kept for restarts, passed on
//   (route_atom, caf::actor)       the router, which then gets a RouteOutcome per finished
//                                  automatically routed request
caf::actor spawn_verifier(caf::actor_system& sys, std::shared_ptr<Transformer> target,
                          std::vector<caf::actor> drafters, caf::actor intake, caf::actor metrics,
                          std::vector<caf::actor> buffers, VerifierOptions opt);

}  // namespace osd
