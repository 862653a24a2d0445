// osd-bench spec: tokens/s of target-only vs speculative decoding (fixed k, adaptive k) for two
// draft qualities, with the measured per-token acceptance alpha, cost ratio c, the paper's
// predicted speedup beside the measured one, and greedy equality with target-only. One machine,
// batch 1 by default; --repeats N runs every mode N times (shuffled request order, other seeds)
// and reports the median with min-max.
#include <torch/torch.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <map>
#include <random>

#include "models/speculation/spec_decoder.hpp"
#include "runtime/cli/bench_greedy.hpp"
#include "runtime/cli/bench_models.hpp"
#include "runtime/cli/bench_report.hpp"
#include "runtime/cli/bench_stats.hpp"
#include "runtime/cli/benches.hpp"

namespace osd::bench {

namespace {

struct Mode {
  std::string name;
  std::shared_ptr<Transformer> draft;
  bool adaptive;
  SamplingMode sampling = SamplingMode::coupled;  // sampled requests: how draft tokens are drawn
};

// One timed pass of a mode over the requests, in the given order.
struct Pass {
  double tokens_per_s = 0;
  SpecStats stats;
  double c = 0;                                 // measured draft step / target pass
  std::vector<std::vector<int64_t>> outputs;    // per request (original index)
};

Pass timed_pass(const std::shared_ptr<Transformer>& target, const Mode& m, const SpecOptions& so,
                const std::vector<GenerationRequest>& reqs, const std::vector<size_t>& order) {
  SpecDecoder warm(target, m.draft, so);
  warm.generate({reqs[order[0]]});  // warm-up
  std::vector<GenerationRequest> shuffled;
  for (size_t i : order) shuffled.push_back(reqs[i]);
  SpecDecoder timed(target, m.draft, so);
  const double t0 = now_synced(false);
  auto outs = timed.generate(shuffled);
  const double secs = now_synced(false) - t0;
  Pass p;
  int64_t tokens = 0;
  p.outputs.resize(reqs.size());
  for (size_t j = 0; j < outs.size(); ++j) {
    tokens += static_cast<int64_t>(outs[j].tokens.size());
    p.outputs[order[j]] = outs[j].tokens;
  }
  p.tokens_per_s = tokens / secs;
  p.stats = timed.total_stats();
  p.c = m.draft ? timed.cost_ratio() : 0.0;
  return p;
}

// Greedy outputs of a mode for all requests (untimed): the side run of sampled benchmarks.
std::vector<std::vector<int64_t>> greedy_outputs(const std::shared_ptr<Transformer>& target,
                                                 const Mode& m, const SpecOptions& so,
                                                 std::vector<GenerationRequest> reqs) {
  for (auto& r : reqs) r.sampling = SamplingParams{0.0};
  SpecDecoder dec(target, m.draft, so);
  std::vector<std::vector<int64_t>> out;
  for (auto& o : dec.generate(reqs)) out.push_back(std::move(o.tokens));
  return out;
}

// The range of a spread as "min-max" text for the table.
std::string range_text(const nlohmann::json& s, int precision = 1) {
  if (s.is_null()) return "-";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f-%.*f", precision, s["min"].get<double>(), precision,
                s["max"].get<double>());
  return buf;
}

}  // namespace

void add_spec_bench(CLI::App& app, bool& json) {
  auto* cmd = app.add_subcommand("spec", "target-only vs speculative decoding on CPU (random structured models)");
  struct Opts {
    PairShape shape;
    int64_t prompts = 8, prompt_len = 16, new_tokens = 64, k = 4, k_max = 8, batch = 1, repeats = 1;
    double temperature = 0, depth_std = 0.02;
  };
  auto o = std::make_shared<Opts>();
  cmd->add_option("--vocab", o->shape.vocab)->capture_default_str();
  cmd->add_option("--hidden", o->shape.hidden)->capture_default_str();
  cmd->add_option("--layers", o->shape.layers, "target layers")->capture_default_str();
  cmd->add_option("--draft-layers", o->shape.draft_layers)->capture_default_str();
  cmd->add_option("--prompts", o->prompts)->check(CLI::Range(1, 10000))->capture_default_str();
  cmd->add_option("--prompt-len", o->prompt_len)->check(CLI::Range(1, 4096))->capture_default_str();
  cmd->add_option("--new-tokens", o->new_tokens)->check(CLI::Range(1, 4096))->capture_default_str();
  cmd->add_option("--k", o->k, "fixed draft length")->check(CLI::Range(1, 64))->capture_default_str();
  cmd->add_option("--k-max", o->k_max, "adaptive k bound")->check(CLI::Range(1, 64))->capture_default_str();
  cmd->add_option("--batch", o->batch, "sequences in flight")->check(CLI::Range(1, 1024))->capture_default_str();
  cmd->add_option("--temperature", o->temperature, "0: greedy")->check(CLI::Range(0.0, 10.0))->capture_default_str();
  cmd->add_option("--depth-std", o->depth_std, "weight std of the target's deeper layers (draft quality)")
      ->capture_default_str();
  cmd->add_option("--repeats", o->repeats,
                  "timed passes of every mode, each in a shuffled request order with other seeds "
                  "(figures stated as results: >= 3); the table shows medians")
      ->check(CLI::Range(1, 100))
      ->capture_default_str();
  cmd->callback([o, &json] {
    auto tcfg = shape(o->shape, o->shape.layers), dcfg = shape(o->shape, o->shape.draft_layers);
    auto target = std::make_shared<Transformer>(tcfg, 1);
    structure(*target, 1, o->shape.draft_layers, o->depth_std);
    auto copy = truncated_copy(*target, dcfg);
    auto unrelated = std::make_shared<Transformer>(dcfg, 2);
    structure(*unrelated, 2, o->shape.draft_layers, o->depth_std);
    std::vector<GenerationRequest> reqs(o->prompts);
    auto gen = at::detail::createCPUGenerator(3);
    for (int64_t i = 0; i < o->prompts; ++i) {
      auto t = torch::randint(0, o->shape.vocab, {o->prompt_len}, gen, torch::kInt64);
      reqs[i].prompt.assign(t.data_ptr<int64_t>(), t.data_ptr<int64_t>() + o->prompt_len);
      reqs[i].max_new_tokens = o->new_tokens;
      reqs[i].sampling.temperature = o->temperature;
    }
    std::vector<Mode> modes = {{"target only", nullptr, false},
                               {"truncated copy, k=" + std::to_string(o->k), copy, false},
                               {"truncated copy, adaptive", copy, true},
                               {"unrelated, k=" + std::to_string(o->k), unrelated, false},
                               {"unrelated, adaptive", unrelated, true}};
    // Sampled requests: the p/q rejection rule beside the coupled draw (the default), same draft
    // and k, so their acceptance compares.
    if (o->temperature > 0)
      modes.push_back({"truncated copy, k=" + std::to_string(o->k) + ", rejection", copy, false,
                       SamplingMode::rejection});
    auto options = [&](const Mode& m) {
      SpecOptions so;
      so.max_batch = o->batch;
      so.max_len = o->prompt_len + o->new_tokens + 8;
      so.k = m.draft ? o->k : 0;
      so.adaptive_k = m.adaptive;
      so.k_max = o->k_max;
      return so;
    };
    const bool greedy = o->temperature == 0;
    // Per mode, per repeat: the figures of that repeat's pass.
    struct Figures {
      std::vector<double> tps, alpha, mean_k, c, predicted, measured, efficiency, acceptance, mean_len;
      GreedyCheck equal{""};
    };
    std::vector<Figures> fig(modes.size());
    for (size_t m = 1; m < modes.size(); ++m)
      fig[m].equal = GreedyCheck(greedy ? "the timed greedy passes' outputs against target-only's, "
                                          "per repeat"
                                        : "a greedy side run of the same prompts after the timed "
                                          "sampled passes (untimed), against target-only greedy");
    std::vector<size_t> order(reqs.size());
    for (int64_t r = 0; r < o->repeats; ++r) {
      // Repeat r: its own request order and seeds (repeat 0 keeps the prompts' order).
      for (size_t i = 0; i < order.size(); ++i) order[i] = i;
      if (r > 0) std::shuffle(order.begin(), order.end(), std::mt19937_64(1000 + r));
      for (size_t i = 0; i < reqs.size(); ++i)
        reqs[i].sampling.seed = static_cast<uint64_t>(r) * reqs.size() + i;
      std::vector<std::vector<int64_t>> target_outputs;
      double base_tps = 0;
      for (size_t m = 0; m < modes.size(); ++m) {
        for (auto& q : reqs) q.sampling.mode = modes[m].sampling;
        const auto pass = timed_pass(target, modes[m], options(modes[m]), reqs, order);
        auto& f = fig[m];
        if (!modes[m].draft) {
          base_tps = pass.tokens_per_s;
          target_outputs = pass.outputs;
        }
        const auto& st = pass.stats;
        const double mean_k = st.num_drafts ? double(st.num_draft_tokens) / st.num_drafts : 0.0;
        // k of the formula: the fixed k, or the mean k an adaptive mode drafted.
        const double k = modes[m].adaptive ? mean_k : double(o->k);
        const double measured = pass.tokens_per_s / base_tps;
        f.tps.push_back(pass.tokens_per_s);
        f.measured.push_back(measured);
        if (!modes[m].draft) continue;
        const auto sp = speedup_json(st.alpha(), k, pass.c, measured);
        f.alpha.push_back(st.alpha());
        f.mean_k.push_back(mean_k);
        f.c.push_back(pass.c);
        f.acceptance.push_back(st.acceptance_rate());
        f.mean_len.push_back(st.mean_accepted_length());
        f.predicted.push_back(sp["predicted_speedup"].get<double>());
        f.efficiency.push_back(sp["efficiency"].is_null() ? NAN : sp["efficiency"].get<double>());
        if (greedy)
          for (size_t i = 0; i < reqs.size(); ++i)
            f.equal.compare(static_cast<int64_t>(i), reqs[i].prompt, pass.outputs[i],
                            target_outputs[i]);
      }
    }
    if (!greedy) {  // sampled passes: greedy equality from a side run of the same prompts
      const auto ref = greedy_outputs(target, modes[0], options(modes[0]), reqs);
      for (size_t m = 1; m < modes.size(); ++m) {
        const auto out = greedy_outputs(target, modes[m], options(modes[m]), reqs);
        for (size_t i = 0; i < reqs.size(); ++i)
          fig[m].equal.compare(static_cast<int64_t>(i), reqs[i].prompt, out[i], ref[i]);
      }
    }
    Report rep("spec", {"mode", "tok/s", "tok/s range", "alpha", "mean k", "c", "predicted x",
                        "measured x", "efficiency", "greedy mismatches", "mean acc len"});
    nlohmann::json per_mode = nlohmann::json::object();
    for (size_t m = 0; m < modes.size(); ++m) {
      auto& f = fig[m];
      const auto tps = spread(f.tps);
      if (!modes[m].draft) {
        rep.add({modes[m].name, tps["median"], range_text(tps), "-", "-", "-", 1.0, 1.0, "-", "-", "-"});
        per_mode[modes[m].name] = {{"tokens_per_s", tps}};
        continue;
      }
      f.equal.explain(*target);
      const double alpha = median_of(f.alpha), mean_k = median_of(f.mean_k);
      rep.add({modes[m].name, tps["median"], range_text(tps), alpha, mean_k, median_of(f.c),
               median_of(f.predicted), median_of(f.measured), median_of(f.efficiency),
               std::to_string(f.equal.mismatched()) + "/" + std::to_string(f.equal.checked()),
               median_of(f.mean_len)});
      // Each field, per repeat and as median / min / max over repeats:
      //   alpha              per-token acceptance of the geometric model: accepted / (accepted +
      //                      rounds that ended in a rejection) (SpecStats::alpha)
      //   acceptance_rate    accepted / drafted (for comparison with vLLM's figure; not alpha)
      //   k                  the fixed k, or the mean k an adaptive mode drafted
      //   c                  one draft step / one target pass, measured while running
      //   predicted_speedup  the paper's formula at that alpha, k and c
      //   measured_speedup   tokens/s over target-only's in the same repeat
      //   efficiency         measured_speedup / predicted_speedup
      //   greedy_equal       greedy speculative output vs greedy target-only output, same prompts
      per_mode[modes[m].name] = {{"tokens_per_s", tps},
                                 {"alpha", spread(f.alpha)},
                                 {"acceptance_rate", spread(f.acceptance)},
                                 {"mean_k", spread(f.mean_k)},
                                 {"c", spread(f.c)},
                                 {"predicted_speedup", spread(f.predicted)},
                                 {"measured_speedup", spread(f.measured)},
                                 {"efficiency", spread(f.efficiency)},
                                 {"mean_accepted_length", spread(f.mean_len)},
                                 {"greedy_equal", f.equal.to_json()}};
    }
    rep.note("modes", per_mode);
    rep.note("target", std::to_string(tcfg.num_parameters()) + " params, " + std::to_string(tcfg.num_layers) + " layers");
    rep.note("draft", std::to_string(dcfg.num_parameters()) + " params, " + std::to_string(dcfg.num_layers) + " layers");
    rep.note("requests", std::to_string(o->prompts) + " x " + std::to_string(o->new_tokens) + " new tokens, batch " +
                             std::to_string(o->batch) + (greedy ? ", greedy" : ", sampled"));
    rep.note("repeats", o->repeats);
    rep.note("predicted x", "(1 - alpha^(k+1)) / ((1 - alpha)(k c + 1)) at the fixed k (adaptive: "
                            "the mean k drafted); efficiency = measured / predicted; medians over "
                            "repeats");
    rep.note("threads", at::get_num_threads());
    rep.print(json);
  });
}

}  // namespace osd::bench
