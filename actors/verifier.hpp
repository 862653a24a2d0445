#pragma once
// verifier: owns the target model and its TargetScorer; runs continuous batching with rounds
// planned by the RoundScheduler (models/speculation/round_scheduler.hpp).
//
// A request is admitted into a free KV cache slot and its prompt is prefilled in chunks between
// rounds (prefill_chunk tokens at a time), so admissions do not stall running sequences. A route's
// ready sequences then go through rounds:
//   plan     the scheduler picks the round's rows (all ready ones, or half when two cohorts that
//            overlap drafting and verification pay) and k per row (0 included)
//   propose  rows with k > 0 go to the route's drafter with what it has not seen of them
//            (DraftSync); a round where every row has k = 0 never reaches the drafter
//   verify   one ragged target pass over every row of the round (run_spec_round), the records for
//            the distiller, streamed tokens, finished requests
// Sequences a round failed on are rebuilt and retried alone, so one bad request fails alone.
//
// Supervision: the verifier monitors the drafters; a dead one is respawned (drafter_factory) and
// learns every sequence again at its next proposal. Requests are answered by the verifier alone,
// exactly once.
//   (admit_atom, Submission, sink)   sink receives TokenEvent* and exactly one DoneEvent
//   (cancel_atom, RequestId)
//   (swap_atom, WeightsSnapshot)     a route's new draft (kept for restarts, passed to its drafter)
//   (route_atom, caf::actor)         the router, which then gets a RouteOutcome per finished
//                                    automatically routed request
//   (stats_atom)                     -> std::string (JSON)
//   (trace_atom)                     -> std::string (Chrome trace JSON of recorded rounds)
#include <caf/fwd.hpp>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "models/speculation/round_scheduler.hpp"

namespace osd {

class Transformer;

struct VerifierOptions {
  int64_t num_slots = 64;       // sequences in flight
  int64_t max_len = 2048;       // KV cache positions per sequence
  int64_t draft_context = 0;    // positions the drafts can hold (0: max_len)
  SchedulerOptions scheduler;   // k per row, cohorts, probes
  int64_t prefill_chunk = 512;  // prompt tokens prefilled between two rounds (0: whole prompts)
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
  // A sequence that does not draft (k = 0) still gives the buffer the target's distribution of its
  // next token every this-many tokens, so its route's draft keeps learning while speculation is
  // off (0: never).
  int64_t record_plain_every = 8;
  int64_t fail_on_round = -1;   // tests: throw inside this verification round (1-based)
  int64_t max_round_retries = 3;  // a sequence whose rounds keep failing gets an error
  bool trace = false;             // record per-round draft / verify intervals (trace_atom)
  // CUDA: verify on the GPU's multiprocessors outside the distillers' share of this many (the
  // rest of their green-context split); 0: the whole GPU.
  int beside_multiprocessors = 0;
  // CUDA: build the attention plans of every prefill shape on this actor's thread before serving
  // (Transformer::warm_attention_plans).
  bool warm_attention_plans = true;
};

// drafters: one per draft route (empty: target-only decoding). A round uses one route's drafter.
// Each final answer goes through the intake (release_atom, DoneEvent, sink), which frees the id
// and forwards it (no intake: to the sink); metrics gets RoundMetrics per round; buffers[r] (may
// be empty or invalid) gets the target's distributions at route r's verified positions.
caf::actor spawn_verifier(caf::actor_system& sys, std::shared_ptr<Transformer> target,
                          std::vector<caf::actor> drafters, caf::actor intake, caf::actor metrics,
                          std::vector<caf::actor> buffers, VerifierOptions opt);

}  // namespace osd
