#pragma once
// One replay of osd-bench online's workload through the embedding API (a fresh Runtime): the
// requests in a given order, `concurrency` in flight, with what each request and the runtime
// report afterwards.
#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "runtime/cli/bench_online_workload.hpp"
#include "runtime/cli/bench_stats.hpp"
#include "runtime/runtime.hpp"

namespace osd::bench {

struct ReplaySpec {
  std::vector<size_t> order;  // workload indices in submission order
  int64_t concurrency = 4, new_tokens = 96, warmup = 2;
  double temperature = 0;
  uint64_t seed_base = 0;  // request i (workload index) gets seed seed_base + i
  bool send_domain = false;
  std::string trace_path;  // "" = no trace
};

// Per request (indexed by workload index unless said otherwise).
struct RequestOutcome {
  double acceptance = 0;   // accepted / drafted (0 without drafts)
  double latency_ms = 0;   // submit -> result, as the client saw it
  int64_t drafts = 0, draft_tokens = 0, accepted = 0;
  double rejections = NAN;  // rounds that ended in a rejection (NAN: unknown); see rejected_rounds
  std::vector<int64_t> tokens;
};

struct RunResult {
  bool ran = false;
  std::vector<size_t> order;             // the submission order it ran in
  std::vector<RequestOutcome> requests;  // by workload index
  double tokens_per_s = 0, seconds = 0;
  int64_t tokens = 0, draft_version = 0;
  nlohmann::json decisions;
  nlohmann::json distillers;     // per route: busy and paused ms, duty, back-off (learning replays)
  nlohmann::json trace_summary;  // per-actor busy time and overlaps (trace runs only)
  double record_host_ms = 0;     // the verifier's host time making distillation records
  int64_t target_graphs = 0;     // CUDA graphs the verifier captured (shapes it met) ...
  double target_capture_ms = 0;  // ... and the host time their captures took
  SchedulerCounts scheduler;     // the scheduler's k choices after the warm-up (when reported)
  std::string alpha_method;      // how rejections were counted (rejected_rounds)

  // The value of a request field at each submission position [from, to).
  std::vector<double> by_position(double RequestOutcome::*field, size_t from, size_t to) const;
  // Mean of a field over submission positions [from, to).
  double mean(double RequestOutcome::*field, size_t from, size_t to) const;
  // Per-token acceptance alpha over submission positions [from, to): accepted / (accepted +
  // rounds that ended in a rejection); NAN when rejections are unknown.
  double alpha(size_t from, size_t to) const;
  // Mean draft tokens per drafting round over [from, to).
  double mean_k(size_t from, size_t to) const;
  // Latency percentile (q in [0, 1]) over all requests.
  double latency_percentile(double q) const;
};

// Rounds of a request that ended in a rejection (accepted < k): exact where GenerateResult
// carries num_rejected_drafts; otherwise, with a fixed k (fixed_k > 0), its drafting rounds not
// accepted through position k (accepted_per_position[k - 1]) (a request's last round, drafting
// fewer than k tokens near its token limit and fully accepted, then also counts: at most one
// round per request); with adaptive k (fixed_k = 0), unknown (NAN). `method` says which.
double rejected_rounds(const GenerateResult& r, int64_t fixed_k, std::string* method);

// Runs the workload once through a fresh Runtime made from `o`. Throws osd::Error when the
// runtime cannot start or a request fails.
RunResult replay(RuntimeOptions o, const Workload& w, const ReplaySpec& spec, int64_t fixed_k);

// Milliseconds of one batch-1 decode step as the runtime runs it (a CUDA graph where available),
// after a 32-token prefill; median of `steps`.
double decode_step_ms(Transformer& model, int64_t steps);

}  // namespace osd::bench
