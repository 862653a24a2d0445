#include "actors/metrics.hpp"

#include <algorithm>
#include <chrono>
#include <map>
#include <nlohmann/json.hpp>

#include "actors/messages.hpp"

namespace osd {

namespace {

struct MetricsState {
  SpecStats totals;
  std::map<std::string, int64_t> finished;  // by finish reason
  int64_t rounds = 0, plain_rounds = 0, batch_sum = 0, emitted = 0, draft_version = 0;
  std::map<std::string, SpecStats> per_route;      // acceptance per draft route
  std::map<std::string, int64_t> route_requests;
  double score_ms = 0;
  std::vector<double> ttft_ms, tpot_ms;     // last 10k requests
  std::chrono::steady_clock::time_point start = std::chrono::steady_clock::now();
  std::map<std::string, int64_t> distill_decisions;
  DistillMetrics last_distill;
  static inline const char* name = "osd.metrics";
};

double percentile(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[static_cast<size_t>(q * (v.size() - 1))];
}

void keep_last(std::vector<double>& v, double x) {
  if (v.size() >= 10000) v.erase(v.begin());
  v.push_back(x);
}

caf::behavior metrics(caf::stateful_actor<MetricsState>* self) {
  return {
    [=](const RoundMetrics& r) {
      auto& st = self->state;
      ++st.rounds;
      // Rounds without draft tokens: target-only, or adaptive k chose plain steps.
      if (r.draft_tokens == 0) ++st.plain_rounds;
      st.batch_sum += r.batch;
      st.emitted += r.emitted;
      st.score_ms += r.score_ms;
      st.draft_version = std::max(st.draft_version, r.draft_version);
    },
    [=](const DoneEvent& d) {
      auto& st = self->state;
      ++st.finished[d.finish];
      st.totals.merge(d.stats);
      if (!d.route.empty()) {
        st.per_route[d.route].merge(d.stats);
        ++st.route_requests[d.route];
      }
      if (!d.tokens.empty()) {
        keep_last(st.ttft_ms, d.ttft_ms);
        if (d.tokens.size() > 1) keep_last(st.tpot_ms, (d.total_ms - d.ttft_ms) / double(d.tokens.size() - 1));
      }
    },
    [=](const DistillMetrics& d) {
      auto& st = self->state;
      ++st.distill_decisions[d.published ? "published" : d.decision];
      st.last_distill = d;
      if (d.published) st.draft_version = d.version;
    },
    [=](stats_atom) -> std::string {
      auto& st = self->state;
      const double secs =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - st.start).count();
      const auto& t = st.totals;
      nlohmann::json j = {
          {"num_drafts", t.num_drafts},
          {"num_draft_tokens", t.num_draft_tokens},
          {"num_accepted_tokens", t.num_accepted_tokens},
          {"accepted_per_position", t.accepted_per_pos},
          {"acceptance_rate", t.acceptance_rate()},
          {"alpha", t.alpha()},
          {"mean_accepted_length", t.mean_accepted_length()},
          {"requests_finished", st.finished},
          {"rounds", st.rounds},
          {"mean_batch_size", st.rounds ? double(st.batch_sum) / st.rounds : 0.0},
          {"tokens_per_second", secs > 0 ? st.emitted / secs : 0.0},
          {"ttft_ms", {{"p50", percentile(st.ttft_ms, 0.5)}, {"p90", percentile(st.ttft_ms, 0.9)},
                       {"p99", percentile(st.ttft_ms, 0.99)}}},
          {"tpot_ms", {{"p50", percentile(st.tpot_ms, 0.5)}, {"p90", percentile(st.tpot_ms, 0.9)},
                       {"p99", percentile(st.tpot_ms, 0.99)}}},
          {"draft_version", st.draft_version},
          {"distill", {{"decisions", st.distill_decisions}, {"version", st.last_distill.version},
                       {"last_loss", st.last_distill.loss},
                       {"last_heldout_acceptance", st.last_distill.acceptance_candidate}}},
          {"uptime_s", secs}};
      j["plain_rounds"] = st.plain_rounds;
      nlohmann::json routes = nlohmann::json::object();
      for (const auto& [name, stats] : st.per_route)
        routes[name] = {{"requests", st.route_requests[name]}, {"acceptance_rate", stats.acceptance_rate()},
                        {"num_draft_tokens", stats.num_draft_tokens}, {"num_accepted_tokens", stats.num_accepted_tokens}};
      j["routes"] = routes;
      return j.dump();
    },
  };
}

}  // namespace

caf::actor spawn_metrics(caf::actor_system& sys) { return sys.spawn(metrics); }

}  // namespace osd
