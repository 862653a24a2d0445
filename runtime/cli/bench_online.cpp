// osd-bench online: a workload whose domain shifts (A -> B -> C), replayed through the embedding
// API four times in one run: target only, the static draft, the draft learning online, and the
// draft learning in shadow (trained and guarded, never served: the distiller's cost with the
// static draft's acceptance). Prints acceptance per window of requests (static vs online), the
// tokens/s of every run, and writes a TSV and a PNG plot (gnuplot) when asked.
#include <torch/torch.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <deque>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "models/core/decode_graph.hpp"
#include "models/common/error.hpp"
#include "models/text/text_tokenizer.hpp"
#include "models/core/transformer.hpp"
#include "runtime/cli/bench_report.hpp"
#include "runtime/cli/benches.hpp"
#include "runtime/model_source.hpp"
#include "runtime/runtime.hpp"
#include "runtime/trace_summary.hpp"

namespace osd::bench {

namespace {

struct Workload {
  std::vector<std::string> domain;  // per request
  std::vector<std::string> prompt;
};

Workload load_workload(const std::string& corpora, const std::vector<std::string>& domains,
                       int64_t per_domain, int64_t skip) {
  Workload w;
  for (const auto& d : domains) {
    const std::string path = corpora + "/" + d + ".prompts.jsonl";
    std::ifstream f(path);
    if (!f)
      throw Error(path + ": cannot open (build the corpora: python3 scripts/build_corpora.py)");
    std::string line;
    int64_t n = 0, skipped = 0;
    while (skipped < skip && std::getline(f, line)) ++skipped;
    while (n < per_domain && std::getline(f, line)) {
      w.domain.push_back(d);
      w.prompt.push_back(nlohmann::json::parse(line).at("prompt").get<std::string>());
      ++n;
    }
    if (n < per_domain)
      throw Error(path + ": " + std::to_string(skipped + n) + " prompts, " +
                  std::to_string(skip + per_domain) + " needed");
  }
  return w;
}

struct RunResult {
  bool ran = false;
  std::vector<double> acceptance;  // per request index
  std::vector<double> latency_ms;  // per request index: submit -> result
  double tokens_per_s = 0, seconds = 0;
  int64_t tokens = 0, draft_version = 0;
  nlohmann::json decisions;
  nlohmann::json distillers;     // per route: busy and paused ms, duty, back-off (learning replays)
  nlohmann::json trace_summary;  // per-actor busy time and overlaps (trace runs only)
  double record_host_ms = 0;     // the verifier's host time making distillation records
  int64_t target_graphs = 0;     // CUDA graphs the verifier captured (shapes it met) ...
  double target_capture_ms = 0;  // ... and the host time their captures took
};

// Untimed requests before a replay's clock starts, so CUDA graph captures and attention plans
// for the workload's shapes are not charged to its first domain: `per_domain` requests of each
// domain, each prompt one of the domain's reversed (the same lengths, text none of the timed
// requests carries), at most 16 new tokens, `concurrency` at a time.
double steady_us(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double, std::micro>(t.time_since_epoch()).count();
}

void check_warm_up(const GenerateResult& r) {
  if (!r.ok()) throw Error("warm-up request failed: " + r.error_message);
}

void warm_up(Runtime& rt, const Workload& w, int64_t per_domain, int64_t concurrency,
             int64_t new_tokens, bool send_domain, const TextTokenizer& bytes) {
  std::map<std::string, int64_t> taken;
  std::deque<std::shared_ptr<RequestHandle>> in_flight;
  for (size_t i = 0; i < w.prompt.size(); ++i) {
    if (taken[w.domain[i]]++ >= per_domain) continue;
    if (static_cast<int64_t>(in_flight.size()) >= concurrency) {
      check_warm_up(in_flight.front()->get());
      in_flight.pop_front();
    }
    GenerateParams p;
    p.prompt_tokens = bytes.encode(std::string(w.prompt[i].rbegin(), w.prompt[i].rend()));
    p.max_new_tokens = std::min<int64_t>(new_tokens, 16);
    p.temperature = 0;
    p.stream = false;
    if (send_domain) p.domain = w.domain[i];
    in_flight.push_back(rt.submit(p));
  }
  for (auto& h : in_flight) check_warm_up(h->get());
}

RunResult replay(RuntimeOptions o, const Workload& w, int64_t concurrency, int64_t new_tokens,
                 double temperature, bool send_domain, int64_t warmup,
                 const std::string& trace_path = "") {
  o.trace = !trace_path.empty();
  std::string err;
  auto rt = Runtime::create(o, &err);
  if (!rt) throw Error("runtime: " + err);
  RunResult r;
  r.ran = true;
  r.acceptance.assign(w.prompt.size(), 0.0);
  r.latency_ms.assign(w.prompt.size(), 0.0);
  std::vector<std::chrono::steady_clock::time_point> submitted(w.prompt.size());
  const auto bytes = load_text_tokenizer("bytes");  // the default pair is byte-level
  if (warmup > 0) warm_up(*rt, w, warmup, concurrency, new_tokens, send_domain, *bytes);
  std::deque<std::pair<size_t, std::shared_ptr<RequestHandle>>> in_flight;
  auto client_spans = nlohmann::json::array();
  auto finish_one = [&] {
    auto [i, h] = in_flight.front();
    in_flight.pop_front();
    auto res = h->get();
    if (!res.ok()) throw Error("request " + std::to_string(i) + " failed: " + res.error_message);
    r.tokens += static_cast<int64_t>(res.tokens.size());
    r.acceptance[i] =
        res.num_draft_tokens ? double(res.num_accepted_tokens) / res.num_draft_tokens : 0.0;
    const auto now = std::chrono::steady_clock::now();
    r.latency_ms[i] = std::chrono::duration<double, std::milli>(now - submitted[i]).count();
    if (o.trace)  // the request's life as the client saw it, beside the actors' spans
      client_spans.push_back({{"name", "request " + std::to_string(i)},
                              {"ph", "X"},
                              {"pid", 1},
                              {"tid", "client"},
                              {"ts", steady_us(submitted[i])},
                              {"dur", r.latency_ms[i] * 1e3},
                              {"args", {{"domain", w.domain[i]}}}});
  };
  const auto t0 = std::chrono::steady_clock::now();
  for (size_t i = 0; i < w.prompt.size(); ++i) {
    if (static_cast<int64_t>(in_flight.size()) >= concurrency) finish_one();
    GenerateParams p;
    p.prompt_tokens = bytes->encode(w.prompt[i]);
    p.max_new_tokens = new_tokens;
    p.temperature = temperature;
    p.seed = i;
    p.stream = false;
    if (send_domain) p.domain = w.domain[i];
    submitted[i] = std::chrono::steady_clock::now();
    in_flight.emplace_back(i, rt->submit(p));
  }
  while (!in_flight.empty()) finish_one();
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  r.tokens_per_s = r.tokens / r.seconds;
  auto stats = nlohmann::json::parse(rt->stats_json());
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
    std::ofstream(trace_path) << trace.dump() << "\n";
    // Busy time and overlaps per actor (host and CUDA-event tracks), round medians.
    r.trace_summary = summarize_trace(trace);
    r.trace_summary["file"] = trace_path;
    r.trace_summary["events"] = trace["traceEvents"].size();
  }
  rt->shutdown();
  return r;
}

// Milliseconds of one batch-1 decode step as the runtime runs it (a CUDA graph where available,
// models/core/decode_graph.hpp), after a 32-token prefill; median of `steps`.
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

// The expected speedup of speculation with acceptance a, k draft tokens and cost ratio c
// (Leviathan et al.; the paper's formula): (1 - a^(k+1)) / ((1 - a)(k c + 1)).
double predicted_speedup(double a, int64_t k, double c) {
  const double tokens = a >= 1.0 ? double(k + 1) : (1.0 - std::pow(a, double(k + 1))) / (1.0 - a);
  return tokens / (double(k) * c + 1.0);
}

double window_mean(const std::vector<double>& v, size_t from, size_t to) {
  double s = 0;
  for (size_t i = from; i < to; ++i) s += v[i];
  return to > from ? s / double(to - from) : 0.0;
}

std::string plot_png(const std::string& tsv, const std::string& png, const Workload& w,
                     int64_t window) {
  std::string script =
      "set terminal pngcairo size 960,540 font 'sans,11'\nset output '" + png +
      "'\nset title 'osd-bench online: acceptance per window of " + std::to_string(window) +
      " requests'\nset xlabel 'request'\nset ylabel 'acceptance (accepted / drafted)'\n"
      "set yrange [0:1]\nset key bottom right\nset grid\n";
  for (size_t i = 0; i < w.domain.size(); ++i)
    if (i == 0 || w.domain[i] != w.domain[i - 1])
      script += "set arrow from " + std::to_string(i) + ",0 to " + std::to_string(i) +
                ",1 nohead dt 2 lc rgb 'gray'\nset label '" + w.domain[i] + "' at " +
                std::to_string(i + 2) + ",0.95\n";
  script +=
      "plot '" + tsv +
      "' using 1:3 with linespoints lw 2 title 'static draft', '' using 1:4 with linespoints lw 2 "
      "title 'online draft (osd)'\n";
  FILE* gp = popen("gnuplot 2>&1", "w");
  if (!gp) return "cannot run gnuplot";
  std::fputs(script.c_str(), gp);
  const int rc = pclose(gp);
  return rc == 0 ? "" : "gnuplot failed (installed? apt-get install gnuplot-nox)";
}

}  // namespace

void add_online_bench(CLI::App& app, bool& json) {
  auto* cmd = app.add_subcommand(
      "online", "shifting workload: acceptance per window, static vs online draft");
  struct Opts {
    std::string target = "default", draft = "default", corpora = "build/corpora", device = "cpu",
                dtype = "float32";
    std::vector<std::string> domains{"python", "c", "english"};
    int64_t requests = 150, skip = 0, window = 50, new_tokens = 96, concurrency = 4, k = 4;
    double temperature = 0;
    int64_t warmup = 2, repeats = 1;
    bool routes = false, adaptive_k = false, warm_plans = true;
    // The distillers' settings the flags below change, with the runtime's defaults (every
    // replay gets these; enabled and shadow are set per replay).
    OnlineOptions online;
    std::string tsv, png, trace, online_state;
    std::vector<std::string> replays{"target", "static", "shadow", "online"};  // and "record"
  };
  auto o = std::make_shared<Opts>();
  cmd->add_option("--target", o->target, "model spec (default | HF folder | preset)")
      ->capture_default_str();
  cmd->add_option("--draft", o->draft, "model spec")->capture_default_str();
  cmd->add_option("--corpora", o->corpora, "folder with DOMAIN.prompts.jsonl")
      ->capture_default_str();
  cmd->add_option("--domains", o->domains, "domains, in workload order")->capture_default_str();
  cmd->add_option("--requests", o->requests, "requests per domain")
      ->check(CLI::Range(1, 100000))
      ->capture_default_str();
  cmd->add_option("--skip", o->skip,
                  "skip the first N prompts of each domain (e.g. prompts a previous run served)")
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 30))
      ->capture_default_str();
  cmd->add_option("--warmup", o->warmup,
                  "untimed requests per domain before each replay (reversed prompts, <= 16 new "
                  "tokens): graph captures and attention plans are not charged to the first domain")
      ->check(CLI::Range(0, 1000))
      ->capture_default_str();
  cmd->add_option("--window", o->window)->check(CLI::Range(1, 100000))->capture_default_str();
  cmd->add_option("--new-tokens", o->new_tokens)->check(CLI::Range(1, 4096))->capture_default_str();
  cmd->add_option("--concurrency", o->concurrency)
      ->check(CLI::Range(1, 1024))
      ->capture_default_str();
  cmd->add_option("--k", o->k, "draft tokens per round (fixed, so acceptance rates compare)")
      ->check(CLI::Range(1, 64))
      ->capture_default_str();
  cmd->add_flag("--adaptive-k", o->adaptive_k,
                "choose k per request and round (osd-serve's default), up to 2k; acceptance rates "
                "then count only the rounds that drafted");
  cmd->add_option("--temperature", o->temperature)
      ->check(CLI::Range(0.0, 100.0))
      ->capture_default_str();
  cmd->add_option("--lr", o->online.lr, "distiller learning rate")->capture_default_str();
  cmd->add_option("--max-duty", o->online.max_duty,
                  "each distiller's busy share of wall time (1 = no cap)")
      ->check(CLI::Range(1e-3, 1.0))
      ->capture_default_str();
  cmd->add_option("--distiller-multiprocessors", o->online.distiller_multiprocessors,
                  "CUDA: GPU multiprocessors the distillers train on (0 = all; "
                  "osd.online-distiller-multiprocessors)")
      ->check(CLI::Range(0, 4096))
      ->capture_default_str();
  cmd->add_option("--serve-beside-distillers", o->online.serve_beside_distillers,
                  "CUDA: verify and draft on the multiprocessors the distillers do not train on "
                  "(osd.online-serve-beside-distillers)")
      ->capture_default_str();
  cmd->add_option("--warm-attention-plans", o->warm_plans,
                  "CUDA: serving actors build their attention plans before serving "
                  "(osd.warm-attention-plans)")
      ->capture_default_str();
  cmd->add_option("--distill-autocast", o->online.autocast,
                  "CUDA: the distillers' forwards run in bf16 autocast (osd.online-autocast)")
      ->capture_default_str();
  cmd->add_option("--held-backoff", o->online.held_backoff,
                  "held updates in a row that double a route's wait (osd.online-held-backoff)")
      ->check(CLI::Range(0, 4))
      ->capture_default_str();
  cmd->add_option("--guard-z", o->online.guard_z,
                  "a publish needs a held-out gain this many standard errors clear of zero "
                  "(osd.online-guard-z; 0 = off)")
      ->check(CLI::Range(0.0, 10.0))
      ->capture_default_str();
  cmd->add_option("--backoff-duty", o->online.backoff_duty,
                  "a backed-off route also trains at most 1/back-off of the time "
                  "(osd.online-backoff-duty)")
      ->capture_default_str();
  cmd->add_option("--record-prompt", o->online.record_prompt_positions,
                  "buffer the target's distributions at the last N prompt positions too "
                  "(osd.online-record-prompt)")
      ->check(CLI::Range(0, 1 << 20))
      ->capture_default_str();
  cmd->add_option("--replay-requests", o->online.replay_requests,
                  "distillers replay whole requests (osd.online-replay-requests)")
      ->capture_default_str();
  cmd->add_option("--repeats", o->repeats,
                  "run static and shadow (and record) this many times, alternating, and report "
                  "the distiller's cost per pair (mean, min, max): replays of one pair vary by "
                  "several percent")
      ->check(CLI::Range(1, 20))
      ->capture_default_str();
  cmd->add_option("--batch", o->online.batch, "records per distiller step")->capture_default_str();
  cmd->add_option("--min-new-records", o->online.min_new_records, "new records per update")->capture_default_str();
  cmd->add_flag("--routes", o->routes, "one draft route per domain (requests carry their domain)");
  cmd->add_option("--device", o->device)->capture_default_str();
  cmd->add_option("--dtype", o->dtype)->capture_default_str();
  cmd->add_option("--replays", o->replays,
                  "which of target static shadow online to run (static always); record: shadow "
                  "with no training step (the distiller's cost split into recording and training)")
      ->capture_default_str();
  cmd->add_option("--tsv", o->tsv, "write acceptance per window here");
  cmd->add_option(
      "--online-state", o->online_state,
      "the online replay saves its learned drafts here at the end, and starts from them when a "
      "previous run saved some (e.g. measure batch-1 latency after a shift run adapted the "
      "drafts)");
  cmd->add_option("--trace", o->trace,
                  "write the online replay's Chrome trace here (host and CUDA-event tracks); "
                  "the static replay's goes beside it (NAME.static.json)");
  cmd->add_option("--png", o->png, "plot acceptance per window here (gnuplot; needs --tsv)");
  cmd->callback([o, &json] {
    // Checked before anything runs: a wrong list used to fail after the replays it named.
    for (const auto& r : o->replays)
      if (r != "target" && r != "static" && r != "shadow" && r != "record" && r != "online")
        throw Error("--replays: unknown replay '" + r + "' (target static shadow record online)");
    auto wanted = [&](const char* name) {
      return std::find(o->replays.begin(), o->replays.end(), name) != o->replays.end();
    };
    if (!wanted("static"))
      throw Error("--replays must include static (the others are compared with it)");
    auto w = load_workload(o->corpora, o->domains, o->requests, o->skip);
    std::string err;
    auto target = load_model({o->target, o->device, o->dtype, 0}, ModelRole::target, &err);
    if (!target) throw Error(err);
    auto fresh_draft = [&] {
      auto d = load_model({o->draft, o->device, o->dtype, 0}, ModelRole::draft, &err);
      if (!d) throw Error(err);
      return d;
    };
    auto base = [&](bool draft, bool online, bool shadow) {
      RuntimeOptions r;
      r.target = target;
      r.max_batch = std::max<int64_t>(8, o->concurrency);
      r.max_len = std::min<int64_t>(1024, target->config().max_position_embeddings);
      r.adaptive_k = o->adaptive_k;
      r.k = o->k;
      r.k_max = 2 * o->k;
      if (draft) {
        if (o->routes)
          for (const auto& d : o->domains) r.routes.push_back({d, fresh_draft()});
        else
          r.draft = fresh_draft();
      }
      r.online = o->online;
      r.online.enabled = online;
      r.online.shadow = shadow;
      r.online.record_all_positions = true;
      r.warm_attention_plans = o->warm_plans;
      return r;
    };
    auto run = [&](const RuntimeOptions& options, const std::string& trace = "") {
      return replay(options, w, o->concurrency, o->new_tokens, o->temperature, o->routes, o->warmup,
                    trace);
    };
    // Each replay gets drafts loaded afresh (base() loads them).
    auto static_options = [&] { return base(true, false, false); };
    auto shadow_options = [&] { return base(true, true, true); };
    auto recording_options = [&] {
      auto r = base(true, true, true);
      r.online.min_new_records = int64_t{1} << 40;  // records are kept, never trained on
      return r;
    };
    RunResult plain, fixed, shadow, recording, online;
    if (wanted("target")) plain = run(base(false, false, false));
    // static always runs (checked above); with --trace it is traced, beside the online replay
    const std::string static_trace =
        o->trace.empty() ? "" : o->trace.substr(0, o->trace.rfind(".json")) + ".static.json";
    fixed = run(static_options(), static_trace);
    if (wanted("shadow")) shadow = run(shadow_options());
    if (wanted("record")) recording = run(recording_options());
    // Further static / shadow / record pairs, alternating: the cost of each pair.
    std::vector<double> shadow_costs, record_costs;
    auto cost = [](const RunResult& with, const RunResult& without) {
      return 1.0 - with.tokens_per_s / without.tokens_per_s;
    };
    if (shadow.ran) shadow_costs.push_back(cost(shadow, fixed));
    if (recording.ran) record_costs.push_back(cost(recording, fixed));
    // Odd pairs run the learning replays first, so that drift over the process (clocks, caches,
    // the allocator's pools) does not favour one side of every pair.
    for (int64_t i = 1; i < o->repeats && (shadow.ran || recording.ran); ++i) {
      RunResult again, with_shadow, with_recording;
      if (i % 2 == 0) again = run(static_options());
      if (shadow.ran) with_shadow = run(shadow_options());
      if (recording.ran) with_recording = run(recording_options());
      if (i % 2 == 1) again = run(static_options());
      if (shadow.ran) shadow_costs.push_back(cost(with_shadow, again));
      if (recording.ran) record_costs.push_back(cost(with_recording, again));
    }
    if (wanted("online")) {  // without it: a cost measurement (static against shadow / record)
      auto online_options = base(true, true, false);
      online_options.online.state_dir = o->online_state;
      online = run(online_options, o->trace);
    }
    // A window's mean acceptance of a replay; null where the replay did not run.
    auto acceptance = [](const RunResult& r, size_t from, size_t to) {
      return r.ran ? nlohmann::json(window_mean(r.acceptance, from, to)) : nlohmann::json();
    };

    Report rep("online", {"requests", "domain", "static acc", "online acc", "gain"});
    std::ofstream tsv;
    if (!o->tsv.empty()) {
      tsv.open(o->tsv);
      tsv << "# request\tdomain\tstatic\tonline\n";
    }

    for (size_t from = 0; from < w.prompt.size(); from += o->window) {
      const size_t to = std::min(w.prompt.size(), from + static_cast<size_t>(o->window));
      const double s = window_mean(fixed.acceptance, from, to);
      const auto n = acceptance(online, from, to);
      rep.add({std::to_string(from) + "-" + std::to_string(to - 1), w.domain[from], s, n,
               online.ran ? nlohmann::json(n.get<double>() - s) : nlohmann::json()});
      if (tsv)
        tsv << (from + to) / 2 << "\t" << w.domain[from] << "\t" << s << "\t"
            << (online.ran ? std::to_string(n.get<double>()) : "NaN") << "\n";
    }
    if (tsv) tsv.close();
    if (!o->png.empty() && !o->tsv.empty()) {
      auto msg = plot_png(o->tsv, o->png, w, o->window);
      rep.note("png", msg.empty() ? o->png : msg);
    }
    auto tps = [](const RunResult& r) { return r.ran ? nlohmann::json(r.tokens_per_s) : nlohmann::json(); };
    rep.note("tokens_per_s_target_only", tps(plain));
    rep.note("tokens_per_s_static", tps(fixed));
    rep.note("tokens_per_s_online", tps(online));
    rep.note("tokens_per_s_shadow", tps(shadow));
    if (recording.ran) rep.note("tokens_per_s_record", tps(recording));
    if (shadow.ran) rep.note("shadow_distillers", shadow.distillers);
    if (plain.ran) {
      rep.note("speedup_static", fixed.tokens_per_s / plain.tokens_per_s);
      if (online.ran) rep.note("speedup_online", online.tokens_per_s / plain.tokens_per_s);
    }
    if (shadow.ran) rep.note("distiller_overhead", shadow_costs.front());
    auto spread = [](const std::vector<double>& v) {
      const auto s = summarize_pairs(v);
      return nlohmann::json{{"mean", s.mean}, {"median", s.median}, {"stderr", s.stderr_},
                            {"min", s.min},   {"max", s.max},       {"pairs", v.size()},
                            {"per_pair", v}};
    };
    if (shadow_costs.size() > 1) rep.note("distiller_overhead_pairs", spread(shadow_costs));
    if (record_costs.size() > 1) rep.note("recording_overhead_pairs", spread(record_costs));
    if (recording.ran) {  // recording alone, and what training adds on top of it
      nlohmann::json parts = {{"recording", record_costs.front()}};
      if (shadow.ran) parts["training"] = cost(shadow, recording);
      rep.note("distiller_overhead_parts", parts);
    }
    // The verifier's host time for distillation records, as a share of each learning replay's
    // wall time (on the serving critical path between rounds).
    nlohmann::json record_share = nlohmann::json::object();
    if (shadow.ran) record_share["shadow"] = shadow.record_host_ms / (1e3 * shadow.seconds);
    if (recording.ran)
      record_share["record"] = recording.record_host_ms / (1e3 * recording.seconds);
    if (online.ran) record_share["online"] = online.record_host_ms / (1e3 * online.seconds);
    rep.note("record_host_share", record_share);
    // The target's CUDA graphs each replay captured on its serving path (0 without CUDA graphs).
    nlohmann::json captures = nlohmann::json::object();
    for (const auto& [name, r] : {std::pair<const char*, const RunResult*>{"target", &plain},
                                  {"static", &fixed},
                                  {"online", &online}})
      if (r->ran) captures[name] = {{"graphs", r->target_graphs}, {"ms", r->target_capture_ms}};
    rep.note("target_graph_captures", captures);
    // Per domain: mean latency per request and acceptance, over all of the domain's requests
    // and over its last window (after the online draft adapted), plus the formula's prediction
    // from the measured decode-step cost ratio c.
    const double target_ms = decode_step_ms(*target, 50);
    double draft_ms = 0;
    {
      auto d = fresh_draft();
      draft_ms = decode_step_ms(*d, 50);
    }
    const double c = draft_ms / target_ms;
    rep.note("decode_step_ms", {{"target", target_ms}, {"draft", draft_ms}, {"c", c},
                                {"cuda_graphs", DecodeGraph::available() && target->device().is_cuda()}});
    nlohmann::json per_domain = nlohmann::json::object();
    for (const auto& d : o->domains) {
      size_t from = w.prompt.size(), to = 0;
      for (size_t i = 0; i < w.prompt.size(); ++i)
        if (w.domain[i] == d) from = std::min(from, i), to = std::max(to, i + 1);
      const size_t last = to > static_cast<size_t>(o->window) ? std::max(from, to - static_cast<size_t>(o->window)) : from;
      nlohmann::json dj;
      for (const auto& [name, r] : {std::pair<const char*, const RunResult*>{"target", &plain},
                                    {"static", &fixed},
                                    {"shadow", &shadow},
                                    {"record", &recording},
                                    {"online", &online}}) {
        if (!r->ran) continue;
        dj[name] = {{"latency_ms", window_mean(r->latency_ms, from, to)}, {"latency_ms_last", window_mean(r->latency_ms, last, to)},
                    {"acceptance", window_mean(r->acceptance, from, to)}, {"acceptance_last", window_mean(r->acceptance, last, to)}};
      }
      dj["predicted_speedup_static"] = predicted_speedup(window_mean(fixed.acceptance, from, to), o->k, c);
      if (online.ran)
        dj["predicted_speedup_online_last"] =
            predicted_speedup(window_mean(online.acceptance, last, to), o->k, c);
      if (plain.ran)
        dj["speedup_static"] = window_mean(plain.latency_ms, from, to) / window_mean(fixed.latency_ms, from, to);
      if (plain.ran && online.ran)
        dj["speedup_online_last"] =
            window_mean(plain.latency_ms, last, to) / window_mean(online.latency_ms, last, to);
      per_domain[d] = dj;
    }
    rep.note("per_domain", per_domain);
    if (online.ran) {
      rep.note("online_draft_version", online.draft_version);
      rep.note("online_decisions", online.decisions);
      rep.note("online_distillers", online.distillers);
      if (!o->trace.empty()) rep.note("online_trace", online.trace_summary);
    }
    if (!o->trace.empty()) rep.note("static_trace", fixed.trace_summary);
    rep.note("workload",
             {{"domains", o->domains},
              {"requests_per_domain", o->requests},
              {"skipped_per_domain", o->skip},
              {"new_tokens", o->new_tokens},
              {"concurrency", o->concurrency},
              {"k", o->k},
              {"adaptive_k", o->adaptive_k},
              {"temperature", o->temperature},
              {"routes", o->routes},
              {"lr", o->online.lr},
              {"max_duty", o->online.max_duty},
              {"distiller_multiprocessors", o->online.distiller_multiprocessors},
              {"serve_beside_distillers", o->online.serve_beside_distillers},
              {"warm_attention_plans", o->warm_plans},
              {"distill_autocast", o->online.autocast},
              {"replay_requests", o->online.replay_requests},
              {"held_backoff", o->online.held_backoff},
              {"backoff_duty", o->online.backoff_duty},
              {"guard_z", o->online.guard_z},
              {"record_prompt", o->online.record_prompt_positions},
              {"repeats", o->repeats},
              {"online_state", o->online_state},
              {"device", o->device == "cpu" ? std::string("cpu")
                                            : torch_cuda_device_name(c10::Device(o->device))},
              {"threads", at::get_num_threads()}});
    rep.print(json);
  });
}

}  // namespace osd::bench
