// osd-bench serve: the actor runtime under load through the embedding API: throughput and
// latency percentiles at several concurrencies, speculative decoding on vs off, in one run;
// the verifier's idle fraction and how much drafting overlapped verification (from the trace);
// the scheduler's k distribution where the runtime reports it; greedy equality of speculative
// and target-only output on the same prompts; --repeats N with shuffled order and other seeds.
#include <torch/torch.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>

#include "runtime/cli/bench_greedy.hpp"
#include "runtime/cli/bench_models.hpp"
#include "runtime/cli/bench_report.hpp"
#include "runtime/cli/bench_stats.hpp"
#include "runtime/cli/benches.hpp"
#include "runtime/runtime.hpp"
#include "runtime/trace_summary.hpp"

namespace osd::bench {

namespace {

double pct(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[static_cast<size_t>(q * (v.size() - 1))];
}

// One level (speculation on or off, one concurrency) served once.
struct Level {
  double req_s = 0, tok_s = 0, lat_p50 = 0, lat_p90 = 0, lat_p99 = 0, ttft_p50 = 0, tpot_p50 = 0;
  double acceptance = 0, verifier_idle = 0, overlap = 0;
  std::vector<std::vector<int64_t>> outputs;  // per request (original index)
  SchedulerCounts scheduler;                  // rows per k, rounds with every row at k = 0
};

// Serves `reqs` in `order` from `concurrency` client threads submitting back to back.
Level serve_level(RuntimeOptions ro, const std::vector<GenerateParams>& reqs,
                  const std::vector<size_t>& order, int64_t concurrency,
                  const std::string& trace_path) {
  std::string err;
  auto rt = Runtime::create(ro, &err);
  if (!rt) throw std::runtime_error(err);
  const auto n = static_cast<int64_t>(reqs.size());
  std::vector<GenerateResult> results(n);
  const double t0 = now_synced(false);
  std::vector<std::thread> clients;
  for (int64_t c = 0; c < concurrency; ++c)
    clients.emplace_back([&, c] {
      for (int64_t j = c; j < n; j += concurrency) results[order[j]] = rt->submit(reqs[order[j]])->get();
    });
  for (auto& t : clients) t.join();
  const double secs = now_synced(false) - t0;
  Level l;
  std::vector<double> lat, ttft, tpot;
  int64_t tokens = 0, drafted = 0, accepted = 0;
  for (auto& r : results) {
    if (!r.ok()) throw std::runtime_error("request failed: " + r.error_code + ": " + r.error_message);
    tokens += static_cast<int64_t>(r.tokens.size());
    drafted += r.num_draft_tokens;
    accepted += r.num_accepted_tokens;
    lat.push_back(r.total_ms);
    ttft.push_back(r.ttft_ms);
    if (r.tokens.size() > 1) tpot.push_back((r.total_ms - r.ttft_ms) / double(r.tokens.size() - 1));
    l.outputs.push_back(std::move(r.tokens));
  }
  auto stats = nlohmann::json::parse(rt->stats_json());
  auto trace = nlohmann::json::parse(rt->trace_json());
  if (!trace_path.empty()) std::ofstream(trace_path) << trace.dump();
  rt->shutdown();
  l.req_s = n / secs;
  l.tok_s = tokens / secs;
  l.lat_p50 = pct(lat, 0.5);
  l.lat_p90 = pct(lat, 0.9);
  l.lat_p99 = pct(lat, 0.99);
  l.ttft_p50 = pct(ttft, 0.5);
  l.tpot_p50 = pct(tpot, 0.5);
  l.acceptance = drafted ? double(accepted) / drafted : 0.0;
  l.verifier_idle = stats["verifier"]["verifier_idle_fraction"].get<double>();
  l.overlap = ro.draft ? trace_overlap(trace, "drafter", "verifier") : 0.0;
  l.scheduler = SchedulerCounts::from_stats(stats);
  return l;
}

}  // namespace

void add_serve_bench(CLI::App& app, bool& json) {
  auto* cmd = app.add_subcommand("serve", "runtime throughput / latency at several concurrencies, speculation on vs off");
  struct Opts {
    PairShape shape;
    std::vector<int64_t> concurrency{1, 8, 64};
    int64_t requests = 64, prompt_len = 16, new_tokens = 32, max_batch = 64, repeats = 1;
    double temperature = 0;
    std::string trace_path;
    bool control = false;
  };
  auto o = std::make_shared<Opts>();
  cmd->add_option("--concurrency", o->concurrency, "client threads per level")->capture_default_str();
  cmd->add_option("--requests", o->requests, "requests per level (at least the concurrency)")->capture_default_str();
  cmd->add_option("--prompt-len", o->prompt_len)->check(CLI::Range(1, 4096))->capture_default_str();
  cmd->add_option("--new-tokens", o->new_tokens)->check(CLI::Range(1, 4096))->capture_default_str();
  cmd->add_option("--max-batch", o->max_batch)->check(CLI::Range(1, 4096))->capture_default_str();
  cmd->add_option("--temperature", o->temperature, "0: greedy")->check(CLI::Range(0.0, 10.0))->capture_default_str();
  cmd->add_option("--layers", o->shape.layers, "target layers")->capture_default_str();
  cmd->add_option("--trace", o->trace_path, "write the Chrome trace of the last speculative level here");
  cmd->add_option("--repeats", o->repeats,
                  "serve every level this many times, each in a shuffled request order with other "
                  "seeds (figures stated as results: >= 3); the table shows medians")
      ->check(CLI::Range(1, 100))
      ->capture_default_str();
  cmd->add_flag("--control", o->control,
                "also serve every level a second time without speculation (row 'off-b'): the "
                "noise floor of the on/off ratio");
  cmd->callback([o, &json] {
    auto tcfg = shape(o->shape, o->shape.layers), dcfg = shape(o->shape, o->shape.draft_layers);
    auto target = std::make_shared<Transformer>(tcfg, 1);
    structure(*target, 1, o->shape.draft_layers, 0.02);
    auto draft = truncated_copy(*target, dcfg);
    const bool greedy = o->temperature == 0;
    // The prompts of each concurrency level, the same for speculation on and off.
    auto gen = at::detail::createCPUGenerator(3);
    std::vector<std::vector<GenerateParams>> prompts;
    for (int64_t C : o->concurrency) {
      const int64_t n = std::max(o->requests, C);
      std::vector<GenerateParams> reqs(n);
      for (int64_t i = 0; i < n; ++i) {
        auto t = torch::randint(0, o->shape.vocab, {o->prompt_len}, gen, torch::kInt64);
        reqs[i].prompt_tokens.assign(t.data_ptr<int64_t>(), t.data_ptr<int64_t>() + o->prompt_len);
        reqs[i].max_new_tokens = o->new_tokens;
        reqs[i].temperature = o->temperature;
      }
      prompts.push_back(reqs);
    }
    auto options = [&](bool spec) {
      RuntimeOptions ro;
      ro.target = target;
      ro.draft = spec ? draft : nullptr;
      ro.max_batch = o->max_batch;
      ro.max_len = o->prompt_len + o->new_tokens + 16;
      ro.max_in_flight = std::max<int64_t>(1024, *std::max_element(o->concurrency.begin(),
                                                                   o->concurrency.end()) * 2);
      ro.trace = true;
      return ro;
    };
    const size_t L = o->concurrency.size();
    // Sides: 0 target-only, 1 speculation, 2 target-only again (--control).
    const int sides = o->control ? 3 : 2;
    const char* const side_name[] = {"off", "on", "off-b"};
    std::vector<std::vector<Level>> runs[3];  // [side][level] -> per repeat
    for (auto& r : runs) r.resize(L);
    std::vector<GreedyCheck> equal(L, GreedyCheck(greedy ? "each repeat's timed greedy outputs "
                                                           "with speculation against those "
                                                           "without, same prompts"
                                                         : "a greedy side run of the level's "
                                                           "prompts at its concurrency, "
                                                           "speculation on against off (untimed)"));
    for (int64_t r = 0; r < o->repeats; ++r)
      for (int side = 0; side < sides; ++side)
        for (size_t l = 0; l < L; ++l) {
          const bool spec = side == 1;
          auto& reqs = prompts[l];
          std::vector<size_t> order(reqs.size());
          for (size_t i = 0; i < order.size(); ++i) order[i] = i;
          if (r > 0) std::shuffle(order.begin(), order.end(), std::mt19937_64(2000 + r));
          for (size_t i = 0; i < reqs.size(); ++i)
            reqs[i].seed = static_cast<uint64_t>(r) * reqs.size() + i;
          const bool last = spec && l + 1 == L && r + 1 == o->repeats;
          runs[side][l].push_back(serve_level(options(spec), reqs, order, o->concurrency[l],
                                              last ? o->trace_path : ""));
          if (spec && greedy)
            for (size_t i = 0; i < reqs.size(); ++i)
              equal[l].compare(static_cast<int64_t>(i), reqs[i].prompt_tokens,
                               runs[1][l].back().outputs[i], runs[0][l][r].outputs[i]);
        }
    if (!greedy)  // sampled levels: greedy equality from a side run of the same prompts
      for (size_t l = 0; l < L; ++l) {
        auto reqs = prompts[l];
        for (auto& q : reqs) q.temperature = 0;
        std::vector<size_t> order(reqs.size());
        for (size_t i = 0; i < order.size(); ++i) order[i] = i;
        const auto off = serve_level(options(false), reqs, order, o->concurrency[l], "");
        const auto on = serve_level(options(true), reqs, order, o->concurrency[l], "");
        for (size_t i = 0; i < reqs.size(); ++i)
          equal[l].compare(static_cast<int64_t>(i), reqs[i].prompt_tokens, on.outputs[i],
                           off.outputs[i]);
      }
    Report rep("serve", {"spec", "concurrency", "requests", "req/s", "tok/s", "tok/s range",
                         "lat p50 ms", "lat p90 ms", "lat p99 ms", "ttft p50 ms", "tpot p50 ms",
                         "acceptance", "verifier idle", "draft||verify", "k0 rounds",
                         "greedy mismatches"});
    nlohmann::json levels = nlohmann::json::array();
    for (int side = 0; side < sides; ++side)
      for (size_t l = 0; l < L; ++l) {
        const bool spec = side == 1;
        const auto& rs = runs[side][l];
        auto field = [&](double Level::*m) {
          std::vector<double> v;
          for (const auto& x : rs) v.push_back(x.*m);
          return v;
        };
        const auto tok = spread(field(&Level::tok_s));
        char range[64];
        std::snprintf(range, sizeof range, "%.1f-%.1f", tok["min"].get<double>(),
                      tok["max"].get<double>());
        SchedulerCounts counts = rs.front().scheduler;  // summed over the repeats
        for (size_t i = 1; i < rs.size(); ++i) counts = counts.plus(rs[i].scheduler);
        const auto sched = counts.to_json();
        if (spec) equal[l].explain(*target);
        rep.add({side_name[side], o->concurrency[l], static_cast<int64_t>(prompts[l].size()),
                 median_of(field(&Level::req_s)), tok["median"], std::string(range),
                 median_of(field(&Level::lat_p50)), median_of(field(&Level::lat_p90)),
                 median_of(field(&Level::lat_p99)), median_of(field(&Level::ttft_p50)),
                 median_of(field(&Level::tpot_p50)), median_of(field(&Level::acceptance)),
                 median_of(field(&Level::verifier_idle)), median_of(field(&Level::overlap)),
                 sched["k0_round_share"].is_null() ? nlohmann::json("-") : sched["k0_round_share"],
                 spec ? nlohmann::json(std::to_string(equal[l].mismatched()) + "/" +
                                       std::to_string(equal[l].checked()))
                      : nlohmann::json("-")});
        // Per level, each figure per repeat and as median / min / max over repeats; the
        // scheduler's k distribution (share of rows at k = 0, 1, ...) and share of rounds in
        // which every row had k = 0, per repeat (null where the runtime does not report them);
        // greedy_equal: speculative against target-only outputs on the same prompts.
        nlohmann::json sched_per_repeat = nlohmann::json::array();
        for (const auto& x : rs) sched_per_repeat.push_back(x.scheduler.to_json());
        nlohmann::json level = {{"spec", side_name[side]},
                                {"concurrency", o->concurrency[l]},
                                {"requests", prompts[l].size()},
                                {"tokens_per_s", tok},
                                {"requests_per_s", spread(field(&Level::req_s))},
                                {"latency_ms_p50", spread(field(&Level::lat_p50))},
                                {"latency_ms_p90", spread(field(&Level::lat_p90))},
                                {"latency_ms_p99", spread(field(&Level::lat_p99))},
                                {"ttft_ms_p50", spread(field(&Level::ttft_p50))},
                                {"tpot_ms_p50", spread(field(&Level::tpot_p50))},
                                {"acceptance", spread(field(&Level::acceptance))},
                                {"verifier_idle", spread(field(&Level::verifier_idle))},
                                {"k_distribution", sched["k_distribution"]},
                                {"k0_round_share", sched["k0_round_share"]},
                                {"scheduler_per_repeat", sched_per_repeat}};
        if (spec) level["greedy_equal"] = equal[l].to_json();
        levels.push_back(level);
      }
    rep.note("levels", levels);
    rep.note("target", std::to_string(tcfg.num_parameters()) + " params; draft " +
                           std::to_string(dcfg.num_parameters()) + " params (truncated copy)");
    rep.note("requests", std::to_string(o->prompt_len) + "-token prompts, " + std::to_string(o->new_tokens) +
                             " new tokens, " + (greedy ? "greedy" : "sampled"));
    rep.note("repeats", o->repeats);
    rep.note("verifier idle", "fraction of wall time the verifier was not verifying");
    rep.note("draft||verify", "fraction of drafting time that overlapped a verification");
    rep.note("k0 rounds", "share of rounds in which every row had k = 0, over all repeats ('-': "
                          "not reported by this runtime)");
    rep.note("threads", at::get_num_threads());
    rep.print(json);
  });
}

}  // namespace osd::bench
