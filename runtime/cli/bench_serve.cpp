// osd-bench serve: the actor runtime under load through the embedding API: throughput and
// latency percentiles at several concurrencies, speculative decoding on vs off, in one run;
// the verifier's idle fraction and how much drafting overlapped verification (from the trace).
#include <torch/torch.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "runtime/cli/bench_models.hpp"
#include "runtime/cli/bench_report.hpp"
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

}  // namespace

void add_serve_bench(CLI::App& app, bool& json) {
  auto* cmd = app.add_subcommand("serve", "runtime throughput / latency at several concurrencies, speculation on vs off");
  struct Opts {
    PairShape shape;
    std::vector<int64_t> concurrency{1, 8, 64};
    int64_t requests = 64, prompt_len = 16, new_tokens = 32, max_batch = 64;
    double temperature = 0;
    std::string trace_path;
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
  cmd->callback([o, &json] {
    auto tcfg = shape(o->shape, o->shape.layers), dcfg = shape(o->shape, o->shape.draft_layers);
    auto target = std::make_shared<Transformer>(tcfg, 1);
    structure(*target, 1, o->shape.draft_layers, 0.02);
    auto draft = truncated_copy(*target, dcfg);
    Report rep("serve", {"spec", "concurrency", "requests", "req/s", "tok/s", "lat p50 ms", "lat p90 ms", "lat p99 ms",
                         "ttft p50 ms", "tpot p50 ms", "acceptance", "verifier idle", "draft||verify"});
    auto gen = at::detail::createCPUGenerator(3);
    for (bool spec : {false, true}) {
      for (int64_t C : o->concurrency) {
        RuntimeOptions ro;
        ro.target = target;
        ro.draft = spec ? draft : nullptr;
        ro.max_batch = o->max_batch;
        ro.max_len = o->prompt_len + o->new_tokens + 16;
        ro.max_in_flight = std::max<int64_t>(1024, C * 2);
        ro.trace = true;
        std::string err;
        auto rt = Runtime::create(ro, &err);
        if (!rt) throw std::runtime_error(err);
        const int64_t n = std::max(o->requests, C);
        std::vector<GenerateParams> reqs(n);
        for (int64_t i = 0; i < n; ++i) {
          auto t = torch::randint(0, o->shape.vocab, {o->prompt_len}, gen, torch::kInt64);
          reqs[i].prompt_tokens.assign(t.data_ptr<int64_t>(), t.data_ptr<int64_t>() + o->prompt_len);
          reqs[i].max_new_tokens = o->new_tokens;
          reqs[i].temperature = o->temperature;
          reqs[i].seed = static_cast<uint64_t>(i);
        }
        std::vector<GenerateResult> results(n);
        const double t0 = now_synced(false);
        std::vector<std::thread> clients;
        for (int64_t c = 0; c < C; ++c)
          clients.emplace_back([&, c] {
            for (int64_t i = c; i < n; i += C) results[i] = rt->submit(reqs[i])->get();
          });
        for (auto& t : clients) t.join();
        const double secs = now_synced(false) - t0;
        std::vector<double> lat, ttft, tpot;
        int64_t tokens = 0, drafted = 0, accepted = 0;
        for (const auto& r : results) {
          if (!r.ok()) throw std::runtime_error("request failed: " + r.error_code + ": " + r.error_message);
          tokens += static_cast<int64_t>(r.tokens.size());
          drafted += r.num_draft_tokens;
          accepted += r.num_accepted_tokens;
          lat.push_back(r.total_ms);
          ttft.push_back(r.ttft_ms);
          if (r.tokens.size() > 1) tpot.push_back((r.total_ms - r.ttft_ms) / double(r.tokens.size() - 1));
        }
        auto stats = nlohmann::json::parse(rt->stats_json());
        auto trace = nlohmann::json::parse(rt->trace_json());
        if (spec && C == o->concurrency.back() && !o->trace_path.empty()) std::ofstream(o->trace_path) << trace.dump();
        rt->shutdown();
        rep.add({spec ? "on" : "off", C, n, n / secs, tokens / secs, pct(lat, 0.5), pct(lat, 0.9),
                 pct(lat, 0.99), pct(ttft, 0.5), pct(tpot, 0.5),
                 drafted ? double(accepted) / drafted : 0.0,
                 stats["verifier"]["verifier_idle_fraction"].get<double>(),
                 spec ? trace_overlap(trace, "drafter", "verifier") : 0.0});
      }
    }
    rep.note("target", std::to_string(tcfg.num_parameters()) + " params; draft " +
                           std::to_string(dcfg.num_parameters()) + " params (truncated copy)");
    rep.note("requests", std::to_string(o->prompt_len) + "-token prompts, " + std::to_string(o->new_tokens) +
                             " new tokens, " + (o->temperature == 0 ? "greedy" : "sampled"));
    rep.note("verifier idle", "fraction of wall time the verifier was not verifying");
    rep.note("draft||verify", "fraction of drafting time that overlapped a verification");
    rep.note("threads", at::get_num_threads());
    rep.note("adaptive k", "the goodput planner (measured round costs)");
    rep.print(json);
  });
}

}  // namespace osd::bench
