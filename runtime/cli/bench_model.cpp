// osd-bench model: prefill and decode throughput of the transformer core, random weights, and
// the decode step against its memory floor (weight bytes / measured copy bandwidth).
#include <torch/torch.h>

#include <CLI/CLI.hpp>
#include <algorithm>

#if __has_include(<torch/csrc/autograd/profiler_legacy.h>)
#include <torch/csrc/autograd/profiler_legacy.h>
#define OSD_HAVE_LEGACY_PROFILER 1
#endif

#include "models/core/decode_graph.hpp"
#include "models/common/files.hpp"
#include "models/weights/hf_checkpoint.hpp"
#include "models/core/tensor_util.hpp"
#include "models/core/transformer.hpp"
#include "runtime/cli/bench_report.hpp"
#include "runtime/cli/benches.hpp"

namespace osd::bench {

namespace {
// Bytes read + written per second by a large device-to-device copy.
double copy_bandwidth(c10::Device dev) {
  const int64_t n = dev.is_cuda() ? (int64_t{1} << 28) : (int64_t{1} << 25);  // 1 GiB / 128 MiB
  auto src = torch::rand({n}, torch::TensorOptions().device(dev));
  auto dst = torch::empty_like(src);
  const bool cuda = dev.is_cuda();
  dst.copy_(src);
  double best = 1e30;
  for (int i = 0; i < 5; ++i) {
    double t0 = now_synced(cuda);
    dst.copy_(src);
    best = std::min(best, now_synced(cuda) - t0);
  }
  return 2.0 * n * 4 / best;
}
}  // namespace

void add_model_bench(CLI::App& app, bool& json) {
  auto* cmd = app.add_subcommand("model", "prefill / decode tokens/s of the transformer (random weights)");
  auto sizes = std::make_shared<std::vector<std::string>>(std::vector<std::string>{"10m", "100m"});
  auto batches = std::make_shared<std::vector<int64_t>>(std::vector<int64_t>{1, 16});
  auto device = std::make_shared<std::string>("cpu");
  auto dtype = std::make_shared<std::string>("float32");
  auto prompt = std::make_shared<int64_t>(128);
  auto steps = std::make_shared<int64_t>(32);
  auto tokens_per_row = std::make_shared<std::vector<int64_t>>(std::vector<int64_t>{1});
  cmd->add_option("--sizes", *sizes, "model presets or HF folders (their config.json)")
      ->capture_default_str();
  cmd->add_option("--batches", *batches, "batch sizes")->capture_default_str();
  cmd->add_option("--device", *device, "cpu or cuda[:N]")->capture_default_str();
  cmd->add_option("--dtype", *dtype, "float32 | bfloat16 | float16")->capture_default_str();
  cmd->add_option("--prompt", *prompt, "prompt tokens per sequence")->check(CLI::Range(1, 8192))->capture_default_str();
  cmd->add_option("--steps", *steps, "decode steps timed")->check(CLI::Range(1, 100000))->capture_default_str();
  cmd->add_option("--tokens", *tokens_per_row,
                  "tokens per row and step (1: decoding; k + 1: a verification of k drafts)")
      ->check(CLI::Range(1, 64))
      ->capture_default_str();
  cmd->callback([=, &json] {
    // T = 1 first: each T > 1 is compared with the 1-token step measured before it.
    std::sort(tokens_per_row->begin(), tokens_per_row->end());
    c10::Device dev(*device);
    auto dt = parse_dtype(*dtype);
    if (!dt) throw CLI::ValidationError("--dtype", "unknown dtype " + *dtype);
    const bool cuda = dev.is_cuda();
    const double bw = copy_bandwidth(dev);
    Report rep("model",
               {"model", "params", "batch", "tokens", "prefill tok/s", "decode tok/s",
                "decode step ms", "floor ms", "step/floor", "graph step ms", "graph/floor",
                "x 1-token step", "graph x 1-token"});
    // The verification-cost ratio: a step of T tokens per row over a 1-token step at the same
    // batch (eager, and graphed where CUDA graphs ran), for every T > 1 whose batch also ran
    // T = 1 (--tokens 1 5: a k = 4 verification against a decoding step).
    nlohmann::json verify_cost = nlohmann::json::array();
    for (const auto& name : *sizes) {
      // A preset, or an HF folder's config.json (its shape; the weights stay random).
      auto cfg = ModelConfig::preset(name);
      const std::string config_file = name + "/config.json";
      if (!cfg && files::exists(config_file)) {
        try {
          cfg = config_from_hf_json(files::read_json(config_file), config_file);
        } catch (const std::exception& e) {
          throw CLI::ValidationError("--sizes", e.what());
        }
      }
      if (!cfg) throw CLI::ValidationError("--sizes", "unknown preset or HF folder " + name);
      cfg->dtype = *dt;
      Transformer model(*cfg, 0, dev);
      const double weight_bytes = static_cast<double>(cfg->num_parameters()) *
                                  (*dt == DType::f32 ? 4 : 2);
      const double floor_s = weight_bytes / bw;
      for (int64_t B : *batches) {
        double one_step = 0, one_graph = 0;  // the T = 1 step of this batch, when measured
        for (int64_t T : *tokens_per_row) {
          auto cache = model.make_cache(B, *prompt + (*steps + 8) * T);
          // CUDA graph of the decode step (models/core/decode_graph.hpp), captured before the cache
          // holds data; timed on the same cache after the eager steps.
          std::unique_ptr<DecodeGraph> graph;
          if (cuda && DecodeGraph::available())
            graph = std::make_unique<DecodeGraph>(model, cache, B, T);
          std::vector<int64_t> slots;
          for (int64_t i = 0; i < B; ++i) slots.push_back(cache.allocate_slot());
          auto tokens = torch::randint(0, cfg->vocab_size, {B, *prompt}, torch::kInt64);
          auto step_tok = torch::randint(0, cfg->vocab_size, {B, T}, torch::kInt64).to(dev);
          // Warm-up: one prefill and a few steps, then roll back.
          model.forward(tokens, slots, cache, {}, true);
          for (int i = 0; i < 3; ++i) model.forward(step_tok, slots, cache);
          for (auto s : slots) cache.truncate(s, 0);
          double t0 = now_synced(cuda);
          model.forward(tokens, slots, cache, {}, /*last_only=*/true);
          double t1 = now_synced(cuda);
          for (int64_t i = 0; i < *steps; ++i) model.forward(step_tok, slots, cache);
          double t2 = now_synced(cuda);
#ifdef OSD_HAVE_LEGACY_PROFILER
          // OSD_PROFILE=DIR writes a chrome trace of a few more decode steps per model and batch.
          if (const char* dir = std::getenv("OSD_PROFILE")) {
            torch::autograd::profiler::RecordProfile guard(std::string(dir) + "/decode-" + name +
                                                           "-b" + std::to_string(B) + ".json");
            for (int i = 0; i < 4; ++i) model.forward(step_tok, slots, cache);
            now_synced(cuda);
          }
#endif
          const double step = (t2 - t1) / *steps;
          nlohmann::json graph_ms = "-", graph_floor = "-";
          if (graph) {
            for (auto s : slots) cache.truncate(s, *prompt);
            for (int i = 0; i < 3; ++i) graph->step(step_tok, slots);
            for (auto s : slots) cache.truncate(s, *prompt);
            const double g0 = now_synced(cuda);
            for (int64_t i = 0; i < *steps; ++i) graph->step(step_tok, slots);
            const double g = (now_synced(cuda) - g0) / *steps;
            graph_ms = g * 1e3;
            graph_floor = g / floor_s;
          }
          nlohmann::json ratio = "-", graph_ratio = "-";
          if (T == 1) {
            one_step = step;
            one_graph = graph ? graph_ms.get<double>() : 0.0;
          } else if (one_step > 0) {
            ratio = step / one_step;
            if (graph && one_graph > 0) graph_ratio = graph_ms.get<double>() / one_graph;
            verify_cost.push_back({{"model", name},
                                   {"batch", B},
                                   {"tokens", T},
                                   {"step_ms", step * 1e3},
                                   {"one_token_step_ms", one_step * 1e3},
                                   {"ratio", ratio},
                                   {"graph_ratio", graph ? graph_ratio : nlohmann::json()}});
          }
          rep.add({name, cfg->num_parameters(), B, T, B * *prompt / (t1 - t0), B * T / step,
                   step * 1e3, floor_s * 1e3, step / floor_s, graph_ms, graph_floor, ratio,
                   graph_ratio});
        }
      }
    }
    if (!verify_cost.empty()) rep.note("verify_cost_ratio", verify_cost);
    rep.note("device", cuda ? torch_cuda_device_name(dev) : std::string("cpu"));
    rep.note("dtype", dtype_name(*dt));
    rep.note("threads", at::get_num_threads());
    rep.note("copy bandwidth GB/s (read+write)", bw / 1e9);
    rep.note("prompt tokens", *prompt);
    rep.print(json);
  });
}

}  // namespace osd::bench
