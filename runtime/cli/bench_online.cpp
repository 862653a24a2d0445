// osd-bench online: a workload whose domain shifts (A -> B -> C), replayed through the embedding
// API several times in one run: target only, the static draft, the draft learning online, and the
// draft learning in shadow (trained and guarded, never served: the distiller's cost with the
// static draft's acceptance). Prints acceptance per window of requests (static vs online), the
// tokens/s and latency of every replay at each concurrency (--concurrency 1 4 16 64: a sweep),
// alpha with the paper's predicted speedup beside the measured one, greedy equality with
// target-only, and with --repeats N medians with min-max over repeats in shuffled orders.
// Writes a TSV and a PNG plot (gnuplot) when asked, the prompts file (--dump-prompts) and the
// drafts as Hugging Face checkpoints (--export-drafts) for scripts/hf_assisted.py.
//
// Files: bench_online_options (command line), bench_online_workload (prompts, order, hashes),
// bench_online_replay (one replay), bench_online_summary (figures), bench_online_export.
#include <torch/torch.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <unistd.h>

#include "models/common/error.hpp"
#include "models/common/files.hpp"
#include "models/core/decode_graph.hpp"
#include "models/core/transformer.hpp"
#include "models/distillation/online_distiller.hpp"
#include "models/text/text_tokenizer.hpp"
#include "runtime/cli/bench_online_export.hpp"
#include "runtime/cli/bench_online_options.hpp"
#include "runtime/cli/bench_online_replay.hpp"
#include "runtime/cli/bench_online_summary.hpp"
#include "runtime/cli/bench_online_workload.hpp"
#include "runtime/cli/bench_report.hpp"
#include "runtime/cli/bench_stats.hpp"
#include "runtime/cli/benches.hpp"
#include "runtime/model_source.hpp"
#include "runtime/runtime.hpp"

namespace osd::bench {

namespace {

std::string plot_png(const std::string& tsv, const std::string& png, const Workload& w,
                     int64_t window) {
  std::string script =
      "set terminal pngcairo size 960,540 font 'sans,11'\nset output '" + png +
      "'\nset title 'osd-bench online: acceptance per window of " + std::to_string(window) +
      " requests'\nset xlabel 'request'\nset ylabel 'acceptance (accepted / drafted)'\n"
      "set yrange [0:1]\nset key bottom right\nset grid\n";
  for (size_t i = 0; i < w.size(); ++i)
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

// Where each online replay keeps its state. The first one (first level, first repeat) uses
// --online-state (or, to export its drafts, a scratch folder): it starts from what a previous
// run saved there and saves its drafts there. Every later one starts from a scratch copy of the
// state as the run found it, so that every repeat starts from the same drafts.
class OnlineStates {
 public:
  OnlineStates(std::string state_dir, bool exporting) : state_dir_(std::move(state_dir)) {
    scratch_ = files::temp_dir() + "/osd-bench-online-" + std::to_string(::getpid());
    files::remove_tree(scratch_);
    if (!state_dir_.empty() && files::exists(state_dir_)) {
      files::make_dirs(scratch_);
      std::filesystem::copy(state_dir_, scratch_ + "/initial",
                            std::filesystem::copy_options::recursive);
    }
    first_ = !state_dir_.empty() ? state_dir_ : exporting ? scratch_ + "/first" : "";
  }
  ~OnlineStates() { files::remove_tree(scratch_); }
  const std::string& first() const { return first_; }
  std::string later() {
    if (state_dir_.empty()) return "";  // no saved state: every replay starts from fresh drafts
    const std::string dir = scratch_ + "/run-" + std::to_string(++runs_);
    files::make_dirs(scratch_);
    if (files::exists(scratch_ + "/initial"))
      std::filesystem::copy(scratch_ + "/initial", dir, std::filesystem::copy_options::recursive);
    return dir;
  }

 private:
  std::string state_dir_, scratch_, first_;
  int runs_ = 0;
};

// The models of the run and the runtime options of each kind of replay.
struct Setup {
  const OnlineBenchOptions& o;
  std::shared_ptr<Transformer> target;
  std::shared_ptr<Transformer> fresh_draft() const {  // each replay gets drafts loaded afresh
    std::string err;
    auto d = load_model({o.draft, o.device, o.dtype, 0}, ModelRole::draft, &err);
    if (!d) throw Error(err);
    return d;
  }
  RuntimeOptions base(bool draft, bool online, bool shadow, int64_t concurrency) const {
    RuntimeOptions r;
    r.target = target;
    r.max_batch = std::max<int64_t>(8, concurrency);
    r.max_len = std::min<int64_t>(1024, target->config().max_position_embeddings);
    r.max_in_flight = std::max<int64_t>(256, 2 * concurrency);
    r.adaptive_k = o.adaptive_k;
    r.k = o.k;
    r.k_max = 2 * o.k;
    if (draft) {
      if (o.routes)
        for (const auto& d : o.domains) r.routes.push_back({d, fresh_draft()});
      else
        r.draft = fresh_draft();
    }
    r.online = o.online;
    r.online.enabled = online;
    r.online.shadow = shadow;
    r.online.record_all_positions = true;
    r.warm_attention_plans = o.warm_plans;
    return r;
  }
  RuntimeOptions target_only(int64_t c) const { return base(false, false, false, c); }
  RuntimeOptions fixed(int64_t c) const { return base(true, false, false, c); }
  RuntimeOptions shadow(int64_t c) const { return base(true, true, true, c); }
  RuntimeOptions recording(int64_t c) const {  // records are kept, never trained on
    auto r = base(true, true, true, c);
    r.online.min_new_records = int64_t{1} << 40;
    return r;
  }
  RuntimeOptions learning(int64_t c, const std::string& state_dir) const {
    auto r = base(true, true, false, c);
    r.online.state_dir = state_dir;
    return r;
  }
  // domain -> the route serving it (one route per domain with --routes, else "default").
  std::map<std::string, std::string> domain_route() const {
    std::map<std::string, std::string> m;
    for (const auto& d : o.domains) m[d] = o.routes ? d : "default";
    return m;
  }
};

// The distiller's cost in one repeat: 1 - tokens/s with / tokens/s without.
double cost(const RunResult& with, const RunResult& without) {
  return 1.0 - with.tokens_per_s / without.tokens_per_s;
}

// Repeat r of a level: every wanted replay once, in this repeat's request order and seeds.
// Odd repeats run the learning replays before the static one, so that drift over the process
// (clocks, caches, the allocator's pools) does not favour one side of every cost pair; the
// online replay runs last (it saves its state).
void run_repeat(Level& level, int64_t r, bool first_level, const Setup& s, const Workload& w,
                OnlineStates& states) {
  const auto& o = s.o;
  ReplaySpec spec;
  spec.order = request_order(w, r);
  spec.concurrency = level.concurrency;
  spec.new_tokens = o.new_tokens;
  spec.warmup = o.warmup;
  spec.temperature = o.temperature;
  spec.seed_base = static_cast<uint64_t>(r) * 1000003;
  spec.send_domain = o.routes;
  const bool traced = first_level && r == 0 && !o.trace.empty();
  const int64_t fixed_k = o.adaptive_k ? 0 : o.k;
  auto run = [&](const std::string& name, const RuntimeOptions& options,
                 const std::string& trace = "") {
    spec.trace_path = trace;
    level.runs[name].push_back(replay(options, w, spec, fixed_k));
    return level.runs[name].back();
  };
  const int64_t c = level.concurrency;
  if (o.wanted("target")) run("target", s.target_only(c));
  RunResult fixed, control, shadow, recording;
  auto statics = [&] {
    fixed = run("static", s.fixed(c),
                traced ? o.trace.substr(0, o.trace.rfind(".json")) + ".static.json" : "");
    if (o.control) control = run("control", s.fixed(c));
  };
  auto learning = [&] {
    if (o.wanted("shadow")) shadow = run("shadow", s.shadow(c));
    if (o.wanted("record")) recording = run("record", s.recording(c));
  };
  if (r % 2 == 0) {
    statics();
    learning();
  } else {
    learning();
    statics();
  }
  if (shadow.ran) level.shadow_costs.push_back(cost(shadow, fixed));
  if (recording.ran) level.record_costs.push_back(cost(recording, fixed));
  if (control.ran) level.control_costs.push_back(cost(control, fixed));
  if (!o.wanted("online")) return;  // a cost measurement (static against shadow / record)
  const bool first = first_level && r == 0;
  const std::string state = first ? states.first() : states.later();
  run("online", s.learning(c, state), traced ? o.trace : "");
  if (!first) return;
  if (!o.online_state.empty()) record_distilled_prompts(o.online_state, w);
  if (!o.export_drafts.empty())
    export_drafts(o.export_drafts, *s.target, *s.fresh_draft(), state, s.domain_route(),
                  {{"target_spec", o.target},
                   {"draft_spec", o.draft},
                   {"device", o.device},
                   {"dtype", o.dtype},
                   {"prompts", o.dump_prompts.empty() ? nlohmann::json() : nlohmann::json(o.dump_prompts)},
                   {"what", "the online replay of the first repeat at concurrency " +
                                std::to_string(c) + ": its drafts as it saved them at shutdown"}});
}

// Sampled replays: greedy equality from a side run of the first prompts, target-only and static
// speculation at the level's concurrency (untimed).
void greedy_side_run(Level& level, const Setup& s, const Workload& w) {
  Workload first;
  const size_t n = std::min<size_t>(w.size(), static_cast<size_t>(s.o.greedy_side));
  for (size_t i = 0; i < n; ++i) {
    first.domain.push_back(w.domain[i]);
    first.prompt.push_back(w.prompt[i]);
    first.ids.push_back(w.ids[i]);
    first.hash.push_back(w.hash[i]);
  }
  ReplaySpec spec;
  spec.order = request_order(first, 0);
  spec.concurrency = level.concurrency;
  spec.new_tokens = s.o.new_tokens;
  spec.warmup = 0;
  spec.temperature = 0;
  spec.send_domain = s.o.routes;
  const int64_t fixed_k = s.o.adaptive_k ? 0 : s.o.k;
  level.greedy_target = replay(s.target_only(level.concurrency), first, spec, fixed_k);
  level.greedy_static = replay(s.fixed(level.concurrency), first, spec, fixed_k);
}

// The main table: acceptance per window of requests (submission positions), static against
// online, medians over repeats; also written as TSV (and plotted) when asked.
void add_window_rows(Report& rep, const Level& level, const Workload& w,
                     const OnlineBenchOptions& o) {
  std::ofstream tsv;
  if (!o.tsv.empty()) {
    tsv.open(o.tsv);
    tsv << "# request\tdomain\tstatic\tonline\n";
  }
  for (size_t from = 0; from < w.size(); from += o.window) {
    const size_t to = std::min(w.size(), from + static_cast<size_t>(o.window));
    const auto s = window_acceptance(level, "static", from, to);
    const auto n = window_acceptance(level, "online", from, to);
    rep.add({std::to_string(from) + "-" + std::to_string(to - 1), w.domain[from], s, n,
             n.is_null() ? nlohmann::json() : nlohmann::json(n.get<double>() - s.get<double>())});
    if (tsv)
      tsv << (from + to) / 2 << "\t" << w.domain[from] << "\t" << s.get<double>() << "\t"
          << (n.is_null() ? std::string("NaN") : std::to_string(n.get<double>())) << "\n";
  }
  if (tsv) tsv.close();
  if (!o.png.empty() && !o.tsv.empty()) {
    auto msg = plot_png(o.tsv, o.png, w, o.window);
    rep.note("png", msg.empty() ? o.png : msg);
  }
}

const char* const kReplayNames[] = {"target", "static", "control", "shadow", "record", "online"};

// Every level's figures as JSON (see replay_summary for the fields), and the sweep table: one
// row per level and replay, medians over repeats.
nlohmann::json levels_json(const std::vector<Level>& levels, const SummaryContext& ctx,
                           Transformer& target, bool print_table) {
  Report sweep("online sweep",
               {"concurrency", "replay", "tok/s", "tok/s range", "lat p50 ms", "lat p99 ms",
                "x target", "alpha", "predicted x", "efficiency", "greedy mismatches",
                "k0 rounds"});
  nlohmann::json out = nlohmann::json::array();
  for (const auto& level : levels) {
    nlohmann::json replays = nlohmann::json::object();
    for (const char* name : kReplayNames) {
      if (!level.has(name)) continue;
      const auto j = replay_summary(level, name, ctx, target);
      replays[name] = j;
      const auto& tps = j["tokens_per_s"];
      char range[64];
      std::snprintf(range, sizeof range, "%.1f-%.1f", tps["min"].get<double>(),
                    tps["max"].get<double>());
      auto median = [&](const char* key) {
        return j.contains(key) && j[key].is_object() ? j[key]["median"] : nlohmann::json("-");
      };
      nlohmann::json mismatches = "-";
      if (j.contains("greedy_equal"))
        mismatches = std::to_string(j["greedy_equal"]["mismatched"].get<int64_t>()) + "/" +
                     std::to_string(j["greedy_equal"]["checked"].get<int64_t>());
      sweep.add({level.concurrency, name, tps["median"], std::string(range),
                 j["latency_ms_p50"]["median"], j["latency_ms_p99"]["median"],
                 median("measured_speedup"), median("alpha"), median("predicted_speedup"),
                 median("efficiency"), mismatches,
                 j["k0_round_share"].is_null() ? nlohmann::json("-") : j["k0_round_share"]});
    }
    nlohmann::json lj = {{"concurrency", level.concurrency},
                         {"replays", replays},
                         {"per_domain", per_domain_summary(level, ctx)}};
    // The distiller's cost per repeat (shadow against static, 1 - tokens/s ratio), with its 95%
    // interval and whether it excludes 5%; the same for recording alone and for the
    // no-distiller control (static against static: the noise floor).
    if (!level.shadow_costs.empty())
      lj["distiller_overhead_pairs"] = interval_json(level.shadow_costs);
    if (!level.record_costs.empty())
      lj["recording_overhead_pairs"] = interval_json(level.record_costs);
    if (!level.control_costs.empty())
      lj["no_distiller_control_pairs"] = interval_json(level.control_costs);
    out.push_back(lj);
  }
  if (print_table) {
    sweep.note("x target", "tokens/s over target-only's (same repeat), median");
    sweep.note("predicted x", "the paper's formula at alpha, k and the decode-step cost ratio c");
    sweep.note("efficiency", "measured / predicted speedup");
    sweep.print(false);
  }
  return out;
}

// The notes of the first level that earlier versions of this benchmark reported (tokens/s per
// replay, speedups, the distiller's cost), now medians over repeats.
void add_first_level_notes(Report& rep, const Level& level, const nlohmann::json& level_json) {
  rep.note("tokens_per_s_target_only", median_tokens_per_s(level, "target"));
  rep.note("tokens_per_s_static", median_tokens_per_s(level, "static"));
  rep.note("tokens_per_s_online", median_tokens_per_s(level, "online"));
  rep.note("tokens_per_s_shadow", median_tokens_per_s(level, "shadow"));
  if (level.has("record")) rep.note("tokens_per_s_record", median_tokens_per_s(level, "record"));
  const auto& replays = level_json["replays"];
  if (level.has("target"))
    for (const char* name : {"static", "online"})
      if (replays.contains(name))
        rep.note(std::string("speedup_") + name, replays[name]["measured_speedup"]["median"]);
  if (level.has("shadow")) {
    rep.note("shadow_distillers", level.runs.at("shadow").front().distillers);
    rep.note("distiller_overhead", level.shadow_costs.front());
  }
  for (const char* key :
       {"distiller_overhead_pairs", "recording_overhead_pairs", "no_distiller_control_pairs"})
    if (level_json.contains(key)) rep.note(key, level_json[key]);
  if (level.has("record")) {  // recording alone, and what training adds on top of it
    nlohmann::json parts = {{"recording", level.record_costs.front()}};
    if (level.has("shadow"))
      parts["training"] = cost(level.runs.at("shadow").front(), level.runs.at("record").front());
    rep.note("distiller_overhead_parts", parts);
  }
  // The verifier's host time for distillation records, as a share of each learning replay's
  // wall time (on the serving critical path between rounds); first repeat.
  nlohmann::json record_share = nlohmann::json::object(), captures = nlohmann::json::object();
  for (const char* name : {"shadow", "record", "online"})
    if (level.has(name)) {
      const auto& r = level.runs.at(name).front();
      record_share[name] = r.record_host_ms / (1e3 * r.seconds);
    }
  rep.note("record_host_share", record_share);
  // The target's CUDA graphs each replay captured on its serving path (0 without CUDA graphs).
  for (const char* name : {"target", "static", "online"})
    if (level.has(name)) {
      const auto& r = level.runs.at(name).front();
      captures[name] = {{"graphs", r.target_graphs}, {"ms", r.target_capture_ms}};
    }
  rep.note("target_graph_captures", captures);
  rep.note("replays", replays);
  rep.note("per_domain", level_json["per_domain"]);
  std::string greedy;
  for (const auto& [name, j] : replays.items())
    if (j.contains("greedy_equal"))
      greedy += (greedy.empty() ? "" : ", ") + name + " " +
                std::to_string(j["greedy_equal"]["mismatched"].get<int64_t>()) + "/" +
                std::to_string(j["greedy_equal"]["checked"].get<int64_t>());
  rep.note("greedy_mismatches", greedy.empty() ? "none checked" : greedy);
  if (level.has("online")) {
    const auto& online = level.runs.at("online").front();
    rep.note("online_draft_version", online.draft_version);
    rep.note("online_decisions", online.decisions);
    rep.note("online_distillers", online.distillers);
    if (!online.trace_summary.is_null()) rep.note("online_trace", online.trace_summary);
  }
  const auto& fixed = level.runs.at("static").front();
  if (!fixed.trace_summary.is_null()) rep.note("static_trace", fixed.trace_summary);
}

nlohmann::json workload_note(const OnlineBenchOptions& o) {
  return {{"domains", o.domains},
          {"requests_per_domain", o.requests},
          {"skipped_per_domain", o.skip},
          {"new_tokens", o.new_tokens},
          {"concurrency", o.concurrency},
          {"k", o.k},
          {"adaptive_k", o.adaptive_k},
          {"temperature", o.temperature},
          {"routes", o.routes},
          {"lr", o.online.lr},
          {"max_duty", o.online.max_duty},
          {"distiller_multiprocessors", o.online.distiller_multiprocessors},
          {"serve_beside_distillers", o.online.serve_beside_distillers},
          {"warm_attention_plans", o.warm_plans},
          {"distill_autocast", o.online.autocast},
          {"replay_requests", o.online.replay_requests},
          {"held_backoff", o.online.held_backoff},
          {"backoff_duty", o.online.backoff_duty},
          {"guard_z", o.online.guard_z},
          {"record_prompt", o.online.record_prompt_positions},
          {"repeats", o.repeats},
          {"control", o.control},
          {"online_state", o.online_state},
          {"device", o.device == "cpu" ? std::string("cpu")
                                       : torch_cuda_device_name(c10::Device(o.device))},
          {"threads", at::get_num_threads()}};
}

void run_online_bench(const OnlineBenchOptions& o, bool json) {
  o.check();
  const auto bytes = load_text_tokenizer("bytes");  // the default pair is byte-level
  const auto w = load_workload(o.corpora, o.domains, o.requests, o.skip, *bytes);
  if (!o.dump_prompts.empty()) dump_prompts(o.dump_prompts, w, o.new_tokens);
  // Evaluation prompts must be disjoint from those the drafts were distilled on: a saved state
  // records its prompts' hashes; fresh drafts were distilled on none of the workload's.
  const auto distilled =
      o.online_state.empty() ? std::set<std::string>{} : distilled_prompts(o.online_state);
  const int64_t overlap = prompt_overlap(w, distilled);
  if (overlap > 0)
    throw Error(std::to_string(overlap) + " of the " + std::to_string(w.size()) +
                " prompts were distilled on by the drafts saved in " + o.online_state +
                " (distilled_prompts.txt): serve later prompts (--skip) to evaluate them");
  std::string err;
  auto target = load_model({o.target, o.device, o.dtype, 0}, ModelRole::target, &err);
  if (!target) throw Error(err);
  const Setup setup{o, target};
  OnlineStates states(o.online_state, !o.export_drafts.empty());
  std::vector<Level> levels;
  for (size_t l = 0; l < o.concurrency.size(); ++l) {
    Level level;
    level.concurrency = o.concurrency[l];
    for (int64_t r = 0; r < o.repeats; ++r) run_repeat(level, r, l == 0, setup, w, states);
    if (o.temperature > 0) greedy_side_run(level, setup, w);
    levels.push_back(std::move(level));
  }
  // The formula's cost ratio c: one draft decode step over one target decode step, batch 1.
  const double target_ms = decode_step_ms(*target, 50);
  const double draft_ms = decode_step_ms(*setup.fresh_draft(), 50);
  SummaryContext ctx;
  ctx.workload = &w;
  ctx.k = o.k;
  ctx.adaptive = o.adaptive_k;
  ctx.c = draft_ms / target_ms;
  ctx.window = o.window;
  ctx.greedy = o.temperature == 0;
  const auto lj = levels_json(levels, ctx, *target, true);

  Report rep("online", {"requests", "domain", "static acc", "online acc", "gain"});
  add_window_rows(rep, levels.front(), w, o);
  add_first_level_notes(rep, levels.front(), lj.front());
  // Per domain: the online draft's final gain over static and the requests until half of it.
  const auto adaptation = adaptation_summary(levels.front(), w);
  if (!adaptation.is_null()) {
    std::string line;
    for (const auto& [d, a] : adaptation.items())
      line += (line.empty() ? "" : ", ") + d + " " +
              (a["requests_to_half_gain"].is_null() ? std::string("- (no gain)")
                                                    : a["requests_to_half_gain"].dump()) +
              " (gain " + std::to_string(a["final_gain"].get<double>()).substr(0, 6) + ")";
    rep.note("requests_to_half_gain", line);
    rep.note("adaptation", adaptation);
  }
  rep.note("levels", lj);
  rep.note("decode_step_ms",
           {{"target", target_ms}, {"draft", draft_ms}, {"c", ctx.c},
            {"cuda_graphs", DecodeGraph::available() && target->device().is_cuda()}});
  // Evaluation prompts the drafts were distilled on before this run (0: disjoint; the run fails
  // otherwise), how many hashes that was checked against, and repeated prompts left out.
  rep.note("prompt_overlap", overlap);
  rep.note("prompt_overlap_checked_against",
           o.online_state.empty() ? std::string("fresh drafts (no saved state)")
                                  : o.online_state + "/distilled_prompts.txt (" +
                                        std::to_string(distilled.size()) + " prompts)");
  rep.note("prompt_repeats_dropped", w.repeats_dropped);
  if (!o.export_drafts.empty()) rep.note("exported_drafts", o.export_drafts);
  if (!o.dump_prompts.empty()) rep.note("prompts_file", o.dump_prompts);
  rep.note("workload", workload_note(o));
  rep.print(json);
}

}  // namespace

void add_online_bench(CLI::App& app, bool& json) {
  auto* cmd = app.add_subcommand(
      "online", "shifting workload: acceptance per window, static vs online draft");
  auto o = std::make_shared<OnlineBenchOptions>();
  add_online_options(cmd, *o);
  cmd->callback([o, &json] { run_online_bench(*o, json); });
}

}  // namespace osd::bench
