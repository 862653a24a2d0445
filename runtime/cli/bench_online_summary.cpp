#include "runtime/cli/bench_online_summary.hpp"

#include <cmath>
#include <tuple>

#include "models/distillation/adaptation_speed.hpp"
#include "runtime/cli/bench_stats.hpp"

namespace osd::bench {

namespace {

const std::vector<RunResult>& runs_of(const Level& level, const std::string& name) {
  static const std::vector<RunResult> none;
  auto it = level.runs.find(name);
  return it == level.runs.end() ? none : it->second;
}

// The formula's k for a replay over positions [from, to): the fixed k, or the mean k drafted.
double formula_k(const RunResult& r, const SummaryContext& ctx, size_t from, size_t to) {
  return ctx.adaptive ? r.mean_k(from, to) : static_cast<double>(ctx.k);
}

}  // namespace

GreedyCheck greedy_check(const Level& level, const std::string& name, const SummaryContext& ctx) {
  const auto& w = *ctx.workload;
  if (!ctx.greedy) {
    if (name != "static" || !level.greedy_static.ran)
      return GreedyCheck("sampled replays: the greedy side run covers static speculation only");
    GreedyCheck g("sampled replays: a greedy side run of the first " +
                  std::to_string(level.greedy_static.requests.size()) +
                  " prompts, target-only against static speculation (untimed)");
    for (size_t i = 0; i < level.greedy_static.requests.size(); ++i)
      g.compare(static_cast<int64_t>(i), w.ids[i], level.greedy_static.requests[i].tokens,
                level.greedy_target.requests[i].tokens);
    return g;
  }
  if (!level.has("target"))
    return GreedyCheck("no target-only replay ran: nothing to compare with");
  GreedyCheck g("each repeat's outputs against the target-only replay's of the same repeat, "
                "same prompts");
  const auto& target = runs_of(level, "target");
  const auto& runs = runs_of(level, name);
  for (size_t r = 0; r < runs.size() && r < target.size(); ++r)
    for (size_t i = 0; i < w.size(); ++i)
      g.compare(static_cast<int64_t>(i), w.ids[i], runs[r].requests[i].tokens,
                target[r].requests[i].tokens);
  return g;
}

nlohmann::json replay_summary(const Level& level, const std::string& name,
                              const SummaryContext& ctx, Transformer& target) {
  const auto& runs = runs_of(level, name);
  const auto& plain = runs_of(level, "target");
  const size_t n = ctx.workload->size();
  std::vector<double> tps, p50, p99, acceptance, alpha, mean_k, predicted, measured, efficiency;
  SchedulerCounts sched;
  for (size_t r = 0; r < runs.size(); ++r) {
    const auto& x = runs[r];
    tps.push_back(x.tokens_per_s);
    p50.push_back(x.latency_percentile(0.5));
    p99.push_back(x.latency_percentile(0.99));
    sched = r == 0 ? x.scheduler : sched.plus(x.scheduler);
    if (name == "target") continue;
    acceptance.push_back(x.mean(&RequestOutcome::acceptance, 0, n));
    alpha.push_back(x.alpha(0, n));
    mean_k.push_back(x.mean_k(0, n));
    if (r < plain.size()) {
      const auto s = speedup_json(x.alpha(0, n), formula_k(x, ctx, 0, n), ctx.c,
                                  x.tokens_per_s / plain[r].tokens_per_s);
      predicted.push_back(s["predicted_speedup"].get<double>());
      measured.push_back(s["measured_speedup"].get<double>());
      efficiency.push_back(s["efficiency"].is_null() ? NAN : s["efficiency"].get<double>());
    }
  }
  // Each figure per repeat and as median / min / max over the repeats:
  //   tokens_per_s             generated tokens / wall time of the timed requests
  //   latency_ms_p50, _p99     submit -> result per request, as the client saw it
  //   acceptance               accepted / drafted per request, averaged over requests
  //   alpha                    per-token acceptance of the geometric model: accepted / (accepted +
  //                            rounds that ended in a rejection), over all requests (alpha_method)
  //   mean_k                   draft tokens per drafting round
  //   predicted_speedup        the paper's formula (1 - alpha^(k+1)) / ((1 - alpha)(k c + 1)) at
  //                            that alpha, the fixed k (adaptive: mean_k) and the measured c
  //   measured_speedup         tokens/s over the target-only replay's in the same repeat
  //   efficiency               measured_speedup / predicted_speedup
  //   greedy_equal             greedy output against target-only's, same prompts
  //   k_distribution           the scheduler's share of rows at k = 0, 1, ... (all repeats)
  //   k0_round_share           share of rounds in which every row had k = 0 (all repeats)
  nlohmann::json j = {{"repeats", runs.size()},
                      {"tokens_per_s", spread(tps)},
                      {"latency_ms_p50", spread(p50)},
                      {"latency_ms_p99", spread(p99)}};
  const auto s = sched.to_json();
  j["k_distribution"] = s["k_distribution"];
  j["k0_round_share"] = s["k0_round_share"];
  if (name == "target") return j;
  j["acceptance"] = spread(acceptance);
  j["alpha"] = spread(alpha);
  j["alpha_method"] = runs.empty() ? "" : runs.front().alpha_method;
  j["mean_k"] = spread(mean_k);
  j["k"] = ctx.adaptive ? nlohmann::json("mean_k") : nlohmann::json(ctx.k);
  j["c"] = ctx.c;
  j["predicted_speedup"] = spread(predicted);
  j["measured_speedup"] = spread(measured);
  j["efficiency"] = spread(efficiency);
  auto g = greedy_check(level, name, ctx);
  g.explain(target);
  j["greedy_equal"] = g.to_json();
  return j;
}

nlohmann::json per_domain_summary(const Level& level, const SummaryContext& ctx) {
  const auto& w = *ctx.workload;
  const auto& plain = runs_of(level, "target");
  nlohmann::json out = nlohmann::json::object();
  std::vector<std::string> domains;
  for (const auto& d : w.domain)
    if (domains.empty() || domains.back() != d) domains.push_back(d);
  for (const auto& d : domains) {
    const auto [from, to] = w.segment(d);
    const size_t window = static_cast<size_t>(ctx.window);
    const size_t last = to - from > window ? to - window : from;
    nlohmann::json dj = nlohmann::json::object();
    for (const auto& [name, runs] : level.runs) {
      if (runs.empty()) continue;
      // Per repeat over the domain's requests ([from, to)) and over its last window ([last, to):
      // after the online draft adapted): mean latency, mean acceptance, alpha, and where the
      // target replay ran, the formula's prediction beside the measured speedup (mean target
      // latency / mean replay latency over the same requests) and their ratio.
      std::vector<double> lat, lat_last, acc, acc_last, al, al_last, pred, pred_last, meas,
          meas_last, eff, eff_last;
      for (size_t r = 0; r < runs.size(); ++r) {
        const auto& x = runs[r];
        lat.push_back(x.mean(&RequestOutcome::latency_ms, from, to));
        lat_last.push_back(x.mean(&RequestOutcome::latency_ms, last, to));
        if (name == "target") continue;
        acc.push_back(x.mean(&RequestOutcome::acceptance, from, to));
        acc_last.push_back(x.mean(&RequestOutcome::acceptance, last, to));
        al.push_back(x.alpha(from, to));
        al_last.push_back(x.alpha(last, to));
        if (r >= plain.size()) continue;
        for (auto [a, b, p, m, e] : {std::tuple{from, to, &pred, &meas, &eff},
                                     std::tuple{last, to, &pred_last, &meas_last, &eff_last}}) {
          const double measured = plain[r].mean(&RequestOutcome::latency_ms, a, b) /
                                  x.mean(&RequestOutcome::latency_ms, a, b);
          const auto s = speedup_json(x.alpha(a, b), formula_k(x, ctx, a, b), ctx.c, measured);
          p->push_back(s["predicted_speedup"].get<double>());
          m->push_back(measured);
          e->push_back(s["efficiency"].is_null() ? NAN : s["efficiency"].get<double>());
        }
      }
      nlohmann::json rj = {{"latency_ms", spread(lat)}, {"latency_ms_last", spread(lat_last)}};
      if (name != "target") {
        rj["acceptance"] = spread(acc);
        rj["acceptance_last"] = spread(acc_last);
        rj["alpha"] = spread(al);
        rj["alpha_last"] = spread(al_last);
        if (!pred.empty()) {
          rj["predicted_speedup"] = spread(pred);
          rj["measured_speedup"] = spread(meas);
          rj["efficiency"] = spread(eff);
          rj["predicted_speedup_last"] = spread(pred_last);
          rj["measured_speedup_last"] = spread(meas_last);
          rj["efficiency_last"] = spread(eff_last);
        }
      }
      dj[name] = rj;
    }
    dj["requests"] = to - from;
    dj["last_window"] = {last, to};
    out[d] = dj;
  }
  return out;
}

nlohmann::json window_acceptance(const Level& level, const std::string& name, size_t from,
                                 size_t to) {
  const auto& runs = runs_of(level, name);
  if (runs.empty()) return nullptr;
  std::vector<double> v;
  for (const auto& x : runs) v.push_back(x.mean(&RequestOutcome::acceptance, from, to));
  return median_of(v);
}

nlohmann::json adaptation_summary(const Level& level, const Workload& w) {
  if (!level.has("static") || !level.has("online")) return nullptr;
  const auto& fixed = level.runs.at("static").front();
  const auto& online = level.runs.at("online").front();
  nlohmann::json out = nlohmann::json::object();
  for (size_t i = 0; i < w.size(); ++i) {
    const auto& d = w.domain[i];
    if (out.contains(d)) continue;
    const auto [from, to] = w.segment(d);
    const auto a = adaptation_speed(fixed.by_position(&RequestOutcome::acceptance, from, to),
                                    online.by_position(&RequestOutcome::acceptance, from, to));
    out[d] = {{"final_gain", a.final_gain},
              {"tail_requests", a.tail},
              {"requests_to_half_gain",
               a.requests_to_half < 0 ? nlohmann::json() : nlohmann::json(a.requests_to_half)}};
  }
  return out;
}

nlohmann::json median_tokens_per_s(const Level& level, const std::string& name) {
  const auto& runs = runs_of(level, name);
  if (runs.empty()) return nullptr;
  std::vector<double> v;
  for (const auto& x : runs) v.push_back(x.tokens_per_s);
  return median_of(v);
}

}  // namespace osd::bench
