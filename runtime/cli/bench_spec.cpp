// osd-bench spec: tokens/s of target-only vs speculative decoding (fixed k, adaptive k) for two
// draft qualities, with the measured acceptance alpha, cost ratio c, and the paper's predicted
// speedup beside the measured one. One run, one machine, batch 1 by default.
#include <torch/torch.h>

#include <CLI/CLI.hpp>

#include "models/speculation/spec_decoder.hpp"
#include "runtime/cli/bench_models.hpp"
#include "runtime/cli/bench_report.hpp"
#include "runtime/cli/benches.hpp"

namespace osd::bench {

void add_spec_bench(CLI::App& app, bool& json) {
  auto* cmd = app.add_subcommand("spec", "target-only vs speculative decoding on CPU (random structured models)");
  struct Opts {
    PairShape shape;
    int64_t prompts = 8, prompt_len = 16, new_tokens = 64, k = 4, k_max = 8, batch = 1;
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
      reqs[i].sampling.seed = i;
    }
    struct Mode { std::string name; std::shared_ptr<Transformer> draft; bool adaptive; };
    std::vector<Mode> modes = {{"target only", nullptr, false},
                               {"truncated copy, k=" + std::to_string(o->k), copy, false},
                               {"truncated copy, adaptive", copy, true},
                               {"unrelated, k=" + std::to_string(o->k), unrelated, false},
                               {"unrelated, adaptive", unrelated, true}};
    Report rep("spec", {"mode", "tok/s", "alpha", "mean k", "c", "predicted x", "measured x", "mean acc len"});
    double base_tps = 0;
    for (const auto& m : modes) {
      SpecOptions so;
      so.max_batch = o->batch;
      so.max_len = o->prompt_len + o->new_tokens + 8;
      so.k = m.draft ? o->k : 0;
      so.adaptive_k = m.adaptive;
      so.k_max = o->k_max;
      SpecDecoder dec(target, m.draft, so);
      dec.generate({reqs[0]});  // warm-up
      SpecDecoder timed(target, m.draft, so);
      const double t0 = now_synced(false);
      auto outs = timed.generate(reqs);
      const double secs = now_synced(false) - t0;
      int64_t tokens = 0;
      for (const auto& out : outs) tokens += static_cast<int64_t>(out.tokens.size());
      const double tps = tokens / secs;
      if (!m.draft) base_tps = tps;
      const auto& st = timed.total_stats();
      const double alpha = st.alpha();
      const double mean_k = st.num_drafts ? double(st.num_draft_tokens) / st.num_drafts : 0.0;
      const double c = m.draft ? timed.cost_ratio() : 0.0;
      // The formula at the mean k (rounded) and measured alpha, c.
      const double predicted = m.draft && mean_k > 0 ? expected_speedup(alpha, std::llround(mean_k), c) : 1.0;
      rep.add({m.name, tps, alpha, mean_k, c, predicted, base_tps > 0 ? tps / base_tps : 1.0,
               st.mean_accepted_length()});
    }
    rep.note("target", std::to_string(tcfg.num_parameters()) + " params, " + std::to_string(tcfg.num_layers) + " layers");
    rep.note("draft", std::to_string(dcfg.num_parameters()) + " params, " + std::to_string(dcfg.num_layers) + " layers");
    rep.note("requests", std::to_string(o->prompts) + " x " + std::to_string(o->new_tokens) + " new tokens, batch " +
                             std::to_string(o->batch) + (o->temperature == 0 ? ", greedy" : ", sampled"));
    rep.note("threads", at::get_num_threads());
    rep.print(json);
  });
}

}  // namespace osd::bench
