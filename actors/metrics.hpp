#pragma once
// metrics: collects statistics from the other actors, with vLLM's meanings.
//   RoundMetrics (verifier, per round)      batch sizes, draft / accepted tokens, verifier time
//   DoneEvent (verifier, per request)       per-request stats, latencies, finish reasons
//   (stats_atom) -> std::string             one JSON object (see docs/PROTOCOL.md, "stats")
#include <caf/fwd.hpp>

namespace osd {

caf::actor spawn_metrics(caf::actor_system& sys);

}  // namespace osd
