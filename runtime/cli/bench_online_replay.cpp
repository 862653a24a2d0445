#include "runtime/cli/bench_online_replay.hpp"

#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <deque>
#include <fstream>
#include <map>
#include <thread>
#include <utility>

#include "models/common/error.hpp"
#include "models/core/decode_graph.hpp"
#include "models/core/transformer.hpp"
#include "runtime/cli/bench_report.hpp"
#include "runtime/trace_summary.hpp"

namespace osd::bench {

namespace {

// num_rejected_drafts of a result type that has it (overload resolution prefers int to long).
template <class R>
auto exact_rejections(const R& r, int) -> decltype(static_cast<double>(r.num_rejected_drafts)) {
  return static_cast<double>(r.num_rejected_drafts);
}
template <class R>
double exact_rejections(const R&, long) {
  return NAN;
}

double steady_us(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double, std::micro>(t.time_since_epoch()).count();
}

void check_warm_up(const GenerateResult& r) {
  if (!r.ok()) throw Error("warm-up request failed: " + r.error_message);
}

// Untimed requests before a replay's clock starts, so CUDA graph captures and attention plans
// for the workload's shapes are not charged to its first domain: `per_domain` requests of each
// domain, each prompt one of the domain's reversed (the same lengths, text none of the timed
// requests carries), at most 16 new tokens, `concurrency` at a time.
void warm_up(Runtime& rt, const Workload& w, const ReplaySpec& spec) {
  std::map<std::string, int64_t> taken;
  std::deque<std::shared_ptr<RequestHandle>> in_flight;
  for (size_t i = 0; i < w.size(); ++i) {
    if (taken[w.domain[i]]++ >= spec.warmup) continue;
    if (static_cast<int64_t>(in_flight.size()) >= spec.concurrency) {
      check_warm_up(in_flight.front()->get());
      in_flight.pop_front();
    }
    GenerateParams p;
    p.prompt_tokens.assign(w.ids[i].rbegin(), w.ids[i].rend());
    p.max_new_tokens = std::min<int64_t>(spec.new_tokens, 16);
    p.temperature = 0;
    p.stream = false;
    if (spec.send_domain) p.domain = w.domain[i];
    in_flight.push_back(rt.submit(p));
  }
  for (auto& h : in_flight) check_warm_up(h->get());
}

// The runtime's stats once its metrics have seen `finished` requests (their DoneEvent copies
// may trail the answers by a moment; at most ~2 s of waiting).
nlohmann::json settled_stats(Runtime& rt, int64_t finished) {
  nlohmann::json stats;
  for (int tries = 0; tries < 200; ++tries) {
    stats = nlohmann::json::parse(rt.stats_json());
    int64_t seen = 0;
    const auto by_finish =
        stats["metrics"].value("requests_finished", nlohmann::json::object());  // {finish: n}
    for (const auto& item : by_finish.items()) seen += item.value().get<int64_t>();
    if (seen >= finished) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return stats;
}

}  // namespace

double rejected_rounds(const GenerateResult& r, int64_t fixed_k, std::string* method) {
  const double exact = exact_rejections(r, 0);
  if (!std::isnan(exact)) {
    *method = "exact: rounds that ended in a rejection, per request";
    return exact;
  }
  if (fixed_k <= 0) {
    *method = "unknown: adaptive k, and the runtime does not report rejected rounds per request";
    return NAN;
  }
  *method =
      "estimate: drafting rounds not accepted through position k (a request's last round, when "
      "shorter than k near its token limit and fully accepted, counts as a rejection too)";
  const auto& per = r.accepted_per_position;
  const int64_t full = static_cast<int64_t>(per.size()) >= fixed_k ? per[fixed_k - 1] : 0;
  return static_cast<double>(r.num_drafts - full);
}

std::vector<double> RunResult::by_position(double RequestOutcome::*field, size_t from,
                                           size_t to) const {
  std::vector<double> v;
  for (size_t j = from; j < to && j < order.size(); ++j) v.push_back(requests[order[j]].*field);
  return v;
}

double RunResult::mean(double RequestOutcome::*field, size_t from, size_t to) const {
  const auto v = by_position(field, from, to);
  double s = 0;
  for (double x : v) s += x;
  return v.empty() ? 0.0 : s / double(v.size());
}

double RunResult::alpha(size_t from, size_t to) const {
  double accepted = 0, rejections = 0;
  for (size_t j = from; j < to && j < order.size(); ++j) {
    const auto& r = requests[order[j]];
    accepted += static_cast<double>(r.accepted);
    rejections += r.rejections;
  }
  return accepted + rejections > 0 ? accepted / (accepted + rejections) : 0.0;
}

double RunResult::mean_k(size_t from, size_t to) const {
  double drafts = 0, tokens = 0;
  for (size_t j = from; j < to && j < order.size(); ++j) {
    drafts += static_cast<double>(requests[order[j]].drafts);
    tokens += static_cast<double>(requests[order[j]].draft_tokens);
  }
  return drafts > 0 ? tokens / drafts : 0.0;
}

double RunResult::latency_percentile(double q) const {
  std::vector<double> v;
  for (const auto& r : requests) v.push_back(r.latency_ms);
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[static_cast<size_t>(q * double(v.size() - 1))];
}

RunResult replay(RuntimeOptions o, const Workload& w, const ReplaySpec& spec, int64_t fixed_k) {
  o.trace = !spec.trace_path.empty();
  std::string err;
  auto rt = Runtime::create(o, &err);
  if (!rt) throw Error("runtime: " + err);
  RunResult r;
  r.ran = true;
  r.order = spec.order;
  r.requests.assign(w.size(), RequestOutcome{});
  std::vector<std::chrono::steady_clock::time_point> submitted(w.size());
  int64_t warm_requests = 0;
  if (spec.warmup > 0) {
    warm_up(*rt, w, spec);
    std::map<std::string, int64_t> per;
    for (const auto& d : w.domain) per[d] = std::min<int64_t>(per[d] + 1, spec.warmup);
    for (const auto& [d, n] : per) warm_requests += n;
  }
  // The scheduler's counters after the warm-up, so the replay's own k choices are reported.
  const auto before = SchedulerCounts::from_stats(settled_stats(*rt, warm_requests));
  std::deque<std::pair<size_t, std::shared_ptr<RequestHandle>>> in_flight;
  auto client_spans = nlohmann::json::array();
  auto finish_one = [&] {
    auto [i, h] = in_flight.front();
    in_flight.pop_front();
    auto res = h->get();
    if (!res.ok()) throw Error("request " + std::to_string(i) + " failed: " + res.error_message);
    auto& q = r.requests[i];
    q.latency_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() -
                                                             submitted[i])
                       .count();
    r.tokens += static_cast<int64_t>(res.tokens.size());
    q.acceptance =
        res.num_draft_tokens ? double(res.num_accepted_tokens) / res.num_draft_tokens : 0.0;
    q.drafts = res.num_drafts;
    q.draft_tokens = res.num_draft_tokens;
    q.accepted = res.num_accepted_tokens;
    q.rejections = rejected_rounds(res, fixed_k, &r.alpha_method);
    q.tokens = std::move(res.tokens);
    if (o.trace)  // the request's life as the client saw it, beside the actors' spans
      client_spans.push_back({{"name", "request " + std::to_string(i)},
                              {"ph", "X"},
                              {"pid", 1},
                              {"tid", "client"},
                              {"ts", steady_us(submitted[i])},
                              {"dur", q.latency_ms * 1e3},
                              {"args", {{"domain", w.domain[i]}}}});
  };
  const auto t0 = std::chrono::steady_clock::now();
  for (size_t i : spec.order) {
    if (static_cast<int64_t>(in_flight.size()) >= spec.concurrency) finish_one();
    GenerateParams p;
    p.prompt_tokens = w.ids[i];
    p.max_new_tokens = spec.new_tokens;
    p.temperature = spec.temperature;
    p.seed = spec.seed_base + i;
    p.stream = false;
    if (spec.send_domain) p.domain = w.domain[i];
    submitted[i] = std::chrono::steady_clock::now();
    in_flight.emplace_back(i, rt->submit(p));
  }
  while (!in_flight.empty()) finish_one();
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  r.tokens_per_s = r.tokens / r.seconds;
  auto stats = settled_stats(*rt, warm_requests + static_cast<int64_t>(w.size()));
  r.scheduler = SchedulerCounts::from_stats(stats).since(before);
  r.draft_version = stats["metrics"].value("draft_version", 0);
  r.decisions = stats["metrics"]["distill"]["decisions"];
  r.distillers = nlohmann::json::object();
  for (const auto& route : stats.value("routes", nlohmann::json::array())) {
    const auto d = route.value("distiller", nlohmann::json());
    if (!d.is_object()) continue;
    nlohmann::json keep = nlohmann::json::object();
    for (const char* key : {"busy_ms", "paused_ms", "duty", "backoff", "updates", "error"})
      if (d.contains(key)) keep[key] = d[key];
    r.distillers[route.value("name", std::string("?"))] = keep;
  }
  const auto verifier_stats = stats.value("verifier", nlohmann::json::object());
  r.record_host_ms = verifier_stats.value("record_host_ms", 0.0);
  r.target_graphs = verifier_stats.value("target_graphs", int64_t{0});
  r.target_capture_ms = verifier_stats.value("target_graph_capture_ms", 0.0);
  if (o.trace) {
    auto trace = nlohmann::json::parse(rt->trace_json());
    for (auto& e : client_spans) trace["traceEvents"].push_back(std::move(e));
    std::ofstream(spec.trace_path) << trace.dump() << "\n";
    // Busy time and overlaps per actor (host and CUDA-event tracks), round medians.
    r.trace_summary = summarize_trace(trace);
    r.trace_summary["file"] = spec.trace_path;
    r.trace_summary["events"] = trace["traceEvents"].size();
  }
  rt->shutdown();
  return r;
}

double decode_step_ms(Transformer& model, int64_t steps) {
  torch::NoGradGuard g;
  const bool cuda = model.device().is_cuda();
  auto cache = model.make_cache(1, 128);
  GraphCache graphs(model, cache);
  const int64_t slot = model.prefill_slot(cache, std::vector<int64_t>(32, 1));
  auto tok = torch::ones({1, 1}, torch::TensorOptions().dtype(torch::kInt64).device(model.device()));
  std::vector<double> t;
  for (int64_t i = 0; i < steps + 3; ++i) {  // the first steps capture the graph: not timed
    if (cache.length(slot) >= 120) cache.truncate(slot, 32);
    const double t0 = now_synced(cuda);
    graphs.forward(tok, {slot}, {1});
    if (i >= 3) t.push_back(now_synced(cuda) - t0);
  }
  std::sort(t.begin(), t.end());
  return 1e3 * t[t.size() / 2];
}

}  // namespace osd::bench
