#pragma once
// metrics: collects statistics from the other actors, with vLLM's meanings.
//   RoundMetrics (verifier, per round)      batch sizes, draft / accepted tokens, verifier time
//   DoneEvent (verifier, per request)       per-request stats, latencies, finish reasons
//   DistillMetrics (distillers)             publishes, held and rolled-back updates, per route
//   (route_atom, names, versions)           the routes' names and starting draft versions
//   (stats_atom) -> std::string             one JSON object (see docs/PROTOCOL.md, "stats")
//
// Per route it keeps cumulative acceptance, acceptance over the route's last
// kRecentRequests requests (a drift shows there first), and a histogram of accepted draft
// tokens per round keyed by the route's draft version. Latency and length histograms have
// fixed buckets (models/common/histogram.hpp); runtime/prometheus.cpp exposes all of it.
#include <caf/fwd.hpp>

#include <cstdint>

namespace osd {

// Requests (with at least one draft round) in a route's recent-acceptance window.
inline constexpr int64_t kRecentRequests = 100;

caf::actor spawn_metrics(caf::actor_system& sys);

}  // namespace osd
