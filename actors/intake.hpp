#pragma once
// intake: admits requests. Validates them against the model and the limits, gives them ids,
// refuses duplicates of ids in flight, and answers `busy` (with a retry hint) when the number
// of requests in flight reaches the queue limit, so memory stays bounded. Every refusal is a
// DoneEvent with finish "error" and a code, sent to the request's sink.
//   (route_atom, caf::actor router)          set the next hop (once, at wiring)
//   (submit_atom, Submission, sink)
//   (release_atom, RequestId)                a request finished: frees its place
//   (release_atom, DoneEvent, sink)          the same, then forwards the final answer to the sink
//                                            (so an id is free before its client sees the answer)
//   (drain_atom) -> int64_t                  refuse new work from now on; replies in-flight count
//   (stats_atom) -> std::string              JSON counters
#include <caf/fwd.hpp>

#include <cstdint>

namespace osd {

struct IntakeOptions {
  int64_t max_in_flight = 256;       // requests admitted and not finished (queue limit)
  int64_t max_new_tokens = 4096;     // upper bound a request may ask for
  int64_t vocab_size = 0;            // token ids must be below this
  int64_t context = 2048;            // prompt + new tokens must fit
  int64_t retry_after_ms = 200;      // hint in `busy` errors
  bool has_tokenizer = false;        // stop strings need one
};

caf::actor spawn_intake(caf::actor_system& sys, IntakeOptions opt);

}  // namespace osd
