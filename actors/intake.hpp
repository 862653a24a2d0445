#pragma once
// intake: admits requests. Validates them against the model and the limits, refuses duplicates
// of ids in flight, and answers `busy` (with a retry hint) when the number of requests in flight
// reaches the queue limit, so memory stays bounded. Every refusal is a DoneEvent with finish
// "error" and a code, sent to the request's sink. A request the model cannot hold (prompt +
// max_new_tokens beyond the context) is refused here, before any actor that other requests
// share sees it.
//   (route_atom, caf::actor router)          set the next hop (once, at wiring)
//   (cancel_atom, caf::actor verifier)       set where cancels go (once, at wiring)
//   (submit_atom, Submission, sink)
//   (cancel_atom, RequestId)                 passed to the verifier only while the id is in
//                                            flight here (admitted, not yet answered); any other
//                                            cancel is dropped, so it can never reach a later
//                                            request that reuses the id
//   (release_atom, RequestId)                a request finished: frees its place
//   (release_atom, DoneEvent, sink)          the same, then forwards the final answer to the sink
//                                            (so an id is free before its client sees the answer)
//   (drain_atom) -> int64_t                  refuse new work from now on; replies in-flight count
//   (stats_atom) -> std::string              JSON counters
#include <caf/fwd.hpp>

#include <cstddef>
#include <cstdint>
#include <string>

namespace osd {

struct IntakeOptions {
  int64_t max_in_flight = 256;       // requests admitted and not finished (queue limit)
  int64_t max_new_tokens = 512;      // upper bound a request may ask for
  int64_t vocab_size = 0;            // token ids must be below this
  // Prompt + max_new_tokens must fit: the KV cache positions per sequence (max_len) and every
  // model's max_position_embeddings, whichever is smallest.
  int64_t context = 2048;
  int64_t retry_after_ms = 200;      // hint in `busy` errors
  bool has_tokenizer = false;        // stop strings need one
  // Bounds on a request's lists (docs/PROTOCOL.md): they keep per-request work and memory small.
  size_t max_stop_strings = 16;
  size_t max_stop_bytes = 256;       // per stop string
  size_t max_eos_ids = 64;
};

// Empty when the request is acceptable, else {code, message}.
struct Refusal {
  std::string code, message;
  bool empty() const { return code.empty(); }
};
struct Submission;
Refusal check_submission(const Submission& s, const IntakeOptions& o);

caf::actor spawn_intake(caf::actor_system& sys, IntakeOptions opt);

}  // namespace osd
