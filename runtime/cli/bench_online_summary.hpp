#pragma once
// osd-bench online's figures: from the replays of each concurrency level and repeat to the
// per-replay, per-domain and per-window summaries it prints and puts in its JSON.
#include <nlohmann/json.hpp>

#include <map>
#include <string>
#include <vector>

#include "runtime/cli/bench_greedy.hpp"
#include "runtime/cli/bench_online_replay.hpp"
#include "runtime/cli/bench_online_workload.hpp"

namespace osd {
class Transformer;
}

namespace osd::bench {

// The replays of one concurrency level: per replay ("target", "static", "control", "shadow",
// "record", "online") one result per repeat, and the costs of the learning replays (and of the
// no-distiller control) against the static replay of the same repeat: 1 - tokens/s with /
// tokens/s without.
struct Level {
  int64_t concurrency = 1;
  std::map<std::string, std::vector<RunResult>> runs;
  std::vector<double> shadow_costs, record_costs, control_costs;
  // Sampled workloads: greedy side runs of target-only and static speculation (see
  // greedy_check).
  RunResult greedy_target, greedy_static;
  bool has(const std::string& name) const {
    auto it = runs.find(name);
    return it != runs.end() && !it->second.empty();
  }
};

// What the summaries need to know about the run.
struct SummaryContext {
  const Workload* workload = nullptr;
  int64_t k = 4;          // the fixed k (the formula's k unless adaptive)
  bool adaptive = false;  // adaptive k: the formula takes the mean k drafted
  double c = 0;           // measured cost ratio: one draft decode step / one target decode step
  int64_t window = 50;
  bool greedy = true;     // the timed replays decode greedily
};

// Greedy equality of a speculative replay: with greedy replays, its outputs against the target
// replay's of the same repeat; with sampled ones, the greedy side runs (static only).
GreedyCheck greedy_check(const Level& level, const std::string& name, const SummaryContext& ctx);

// One replay of a level over its repeats (each figure as a spread: median, min, max, per
// repeat): tokens/s, latency p50 / p99, acceptance, alpha, mean k, predicted and measured
// speedup, efficiency, greedy equality, the scheduler's k distribution.
nlohmann::json replay_summary(const Level& level, const std::string& name,
                              const SummaryContext& ctx, Transformer& target);

// Per domain and replay: latency and acceptance over the domain and its last window, alpha, and
// predicted against measured speedup (target latency / replay latency over the same requests).
nlohmann::json per_domain_summary(const Level& level, const SummaryContext& ctx);

// Mean acceptance of a replay over submission positions [from, to), median over repeats; null
// where the replay did not run.
nlohmann::json window_acceptance(const Level& level, const std::string& name, size_t from,
                                 size_t to);

// Per domain, how fast the online draft adapted after the shift into it: the gain over the static
// draft on the domain's last 20 requests and the requests until half of it was reached
// (adaptation_speed), from the first repeat (served in workload order); null without both
// replays.
nlohmann::json adaptation_summary(const Level& level, const Workload& w);

// Median tokens/s of a replay over repeats; null where it did not run.
nlohmann::json median_tokens_per_s(const Level& level, const std::string& name);

}  // namespace osd::bench
