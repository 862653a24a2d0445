#include "actors/metrics.hpp"

#include <algorithm>
#include <chrono>
#include <deque>
#include <map>
#include <nlohmann/json.hpp>

#include "actors/messages.hpp"
#include "models/common/histogram.hpp"

namespace osd {

namespace {

// What the distillers decided for one route, by kind (DistillMetrics::decision).
struct DistillCounts {
  int64_t published = 0, held = 0, rolled_back = 0, deferred = 0, discarded = 0, other = 0;
  void count(const DistillMetrics& d) {
    const auto& s = d.decision;
    if (d.published) ++published;
    else if (s == "held") ++held;
    else if (s == "rejected by guard") ++rolled_back;  // the guard rolled the weights back
    else if (s.rfind("deferred", 0) == 0) ++deferred;
    else if (s.rfind("discarded", 0) == 0) ++discarded;
    else ++other;
  }
  nlohmann::json to_json() const {
    return {{"published", published}, {"rejected", held + rolled_back}, {"held", held},
            {"rolled_back", rolled_back}, {"deferred", deferred}, {"discarded", discarded},
            {"other", other}};
  }
};

struct RouteState {
  SpecStats stats;
  int64_t requests = 0;
  // (draft tokens, accepted tokens) of the last kRecentRequests requests that drafted.
  std::deque<std::pair<int64_t, int64_t>> recent;
  int64_t recent_drafted = 0, recent_accepted = 0;
  int64_t version = 0;  // the draft version serving now
  std::map<int64_t, Histogram> acceptance_length;  // by draft version
  DistillCounts distill;
};

struct MetricsState {
  SpecStats totals;
  std::map<std::string, int64_t> finished;  // by finish reason
  int64_t rounds = 0, plain_rounds = 0, batch_sum = 0, emitted = 0, draft_version = 0;
  std::vector<std::string> route_names;     // route index -> name
  std::map<std::string, RouteState> routes;
  double score_ms = 0;
  std::vector<double> ttft_ms, tpot_ms;     // last 10k requests
  Histogram ttft{Histogram::latency_seconds()}, tpot{Histogram::token_latency_seconds()},
      e2e{Histogram::latency_seconds()}, queue{Histogram::latency_seconds()},
      prompt_len{Histogram::token_counts()}, generation_len{Histogram::token_counts()};
  std::chrono::steady_clock::time_point start = std::chrono::steady_clock::now();
  std::map<std::string, int64_t> distill_decisions;
  DistillMetrics last_distill;
  static inline const char* name = "osd.metrics";

  std::string route_name(int64_t index) const {
    return index >= 0 && index < static_cast<int64_t>(route_names.size()) ? route_names[index]
                                                                          : std::to_string(index);
  }
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

// Rounds of one request by accepted draft tokens: accepted_per_pos[j] counts the rounds that
// accepted at least j + 1 tokens (acceptance stops at the first rejection).
void observe_acceptance_lengths(Histogram& h, const SpecStats& s) {
  const auto& at_least = s.accepted_per_pos;
  int64_t above = s.num_drafts;  // rounds that accepted at least 0 tokens
  for (size_t j = 0; j < at_least.size(); ++j) {
    h.observe(static_cast<double>(j), above - at_least[j]);
    above = at_least[j];
  }
  h.observe(static_cast<double>(at_least.size()), above);
}

void record_done(MetricsState& st, const DoneEvent& d) {
  ++st.finished[d.finish];
  st.totals.merge(d.stats);
  if (!d.route.empty()) {
    auto& r = st.routes[d.route];
    r.stats.merge(d.stats);
    ++r.requests;
    if (d.stats.num_draft_tokens > 0) {
      r.recent.emplace_back(d.stats.num_draft_tokens, d.stats.num_accepted_tokens);
      r.recent_drafted += d.stats.num_draft_tokens;
      r.recent_accepted += d.stats.num_accepted_tokens;
      if (static_cast<int64_t>(r.recent.size()) > kRecentRequests) {
        r.recent_drafted -= r.recent.front().first;
        r.recent_accepted -= r.recent.front().second;
        r.recent.pop_front();
      }
    }
    if (d.stats.num_drafts > 0) {
      auto [it, fresh] =
          r.acceptance_length.try_emplace(r.version, Histogram::acceptance_lengths());
      observe_acceptance_lengths(it->second, d.stats);
    }
  }
  if (d.finish == "error") return;  // refused or failed: no latencies
  if (d.prompt_tokens >= 0) st.prompt_len.observe(static_cast<double>(d.prompt_tokens));
  if (d.queue_ms >= 0) st.queue.observe(d.queue_ms / 1e3);
  st.generation_len.observe(static_cast<double>(d.tokens.size()));
  if (d.tokens.empty()) return;
  st.e2e.observe(d.total_ms / 1e3);
  st.ttft.observe(d.ttft_ms / 1e3);
  keep_last(st.ttft_ms, d.ttft_ms);
  if (d.tokens.size() > 1) {
    const double tpot = (d.total_ms - d.ttft_ms) / double(d.tokens.size() - 1);
    keep_last(st.tpot_ms, tpot);
    st.tpot.observe(tpot / 1e3);
  }
}

nlohmann::json route_json(const RouteState& r) {
  nlohmann::json lengths = nlohmann::json::object();
  for (const auto& [version, h] : r.acceptance_length) lengths[std::to_string(version)] = h.to_json();
  return {{"requests", r.requests},
          {"acceptance_rate", r.stats.acceptance_rate()},
          {"num_drafts", r.stats.num_drafts},
          {"num_draft_tokens", r.stats.num_draft_tokens},
          {"num_accepted_tokens", r.stats.num_accepted_tokens},
          {"recent_acceptance_rate",
           r.recent_drafted ? double(r.recent_accepted) / double(r.recent_drafted) : 0.0},
          {"recent_requests", r.recent.size()},
          {"recent_draft_tokens", r.recent_drafted},
          {"recent_accepted_tokens", r.recent_accepted},
          {"draft_version", r.version},
          {"distill", r.distill.to_json()},
          {"acceptance_length_by_version", lengths}};
}

caf::behavior metrics(caf::stateful_actor<MetricsState>* self) {
  return {
    [=](route_atom, const std::vector<std::string>& names, const std::vector<int64_t>& versions) {
      auto& st = self->state;
      st.route_names = names;
      for (size_t r = 0; r < names.size(); ++r) {
        auto& route = st.routes[names[r]];
        if (r < versions.size()) route.version = versions[r];
        st.draft_version = std::max(st.draft_version, route.version);
      }
    },
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
    [=](const DoneEvent& d) { record_done(self->state, d); },
    [=](const DistillMetrics& d) {
      auto& st = self->state;
      ++st.distill_decisions[d.published ? "published" : d.decision];
      st.last_distill = d;
      auto& route = st.routes[st.route_name(d.route)];
      route.distill.count(d);
      if (d.published) {
        route.version = d.version;
        st.draft_version = std::max(st.draft_version, d.version);
      }
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
      nlohmann::json histograms = {{"time_to_first_token_seconds", st.ttft.to_json()},
                                   {"time_per_output_token_seconds", st.tpot.to_json()},
                                   {"e2e_request_latency_seconds", st.e2e.to_json()},
                                   {"request_generation_tokens", st.generation_len.to_json()}};
      // Only what the verifier reports (DoneEvent::prompt_tokens, queue_ms >= 0).
      if (st.prompt_len.count() > 0) histograms["request_prompt_tokens"] = st.prompt_len.to_json();
      if (st.queue.count() > 0) histograms["request_queue_time_seconds"] = st.queue.to_json();
      j["histograms"] = histograms;
      nlohmann::json routes = nlohmann::json::object();
      for (const auto& [name, route] : st.routes) routes[name] = route_json(route);
      j["routes"] = routes;
      return j.dump();
    },
  };
}

}  // namespace

caf::actor spawn_metrics(caf::actor_system& sys) { return sys.spawn(metrics); }

}  // namespace osd
