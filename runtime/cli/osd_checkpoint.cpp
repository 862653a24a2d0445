// osd-checkpoint: write a random-weight HF checkpoint of a preset (and a config variant), or print
// a checkpoint's logits for given tokens as JSON. Used to check parity with HF transformers
// (scripts/hf_parity.py) and to make test models.
//   osd-checkpoint random --preset tiny --variant qwen2 --seed 3 --dir DIR
//   osd-checkpoint logits --dir DIR --tokens 1 2 3
//   osd-checkpoint convert --dir DIR --dtype bfloat16 --out DIR2   (weights only, HF format)
#include <torch/torch.h>

#include <CLI/CLI.hpp>
#include <iostream>
#include <nlohmann/json.hpp>

#include "models/weights/hf_checkpoint.hpp"
#include "models/core/tensor_util.hpp"
#include "models/core/transformer.hpp"

int main(int argc, char** argv) {
  osd::init_torch_threads();
  CLI::App app{"osd-checkpoint: make random HF checkpoints, print a checkpoint's logits"};
  app.require_subcommand(1);
  std::string preset = "tiny", variant = "llama", out, dir, dtype = "float32";
  uint64_t seed = 0, shard_bytes = osd::kDefaultMaxShardBytes;
  double stddev = 0.1;
  std::vector<int64_t> tokens;
  auto* random = app.add_subcommand("random", "write a random-weight checkpoint");
  random->add_option("--preset", preset)->capture_default_str();
  random->add_option("--variant", variant, "llama | mistral | tied | qwen2 | llama-bias | llama3-rope | linear-rope | gqa | mha | mqa")
      ->capture_default_str();
  random->add_option("--seed", seed)->capture_default_str();
  random->add_option("--std", stddev, "weight std (larger: peakier distributions)")->capture_default_str();
  random->add_option("--dtype", dtype)->capture_default_str();
  // --dir names the checkpoint folder in every subcommand (here the one written); --out, its
  // earlier name here, still works but is not listed. convert writes a second folder: its --out.
  auto* random_dir = random->add_option("--dir", out, "the checkpoint folder to write");
  random->add_option("--out", out)->group("")->excludes(random_dir);
  random->add_option("--max-shard-bytes", shard_bytes, "shard the weights past this size")->capture_default_str();
  auto* logits = app.add_subcommand("logits", "print logits [T, V] of a checkpoint for tokens, as JSON");
  logits->add_option("--dir", dir, "the checkpoint folder to read")->required();
  logits->add_option("--tokens", tokens)->required();
  auto* convert = app.add_subcommand("convert", "rewrite a checkpoint's weights in another dtype");
  convert->add_option("--dir", dir, "the checkpoint folder to read")->required();
  convert->add_option("--dtype", dtype)->required();
  convert->add_option("--out", out, "the checkpoint folder to write")->required();
  convert->add_option("--max-shard-bytes", shard_bytes, "shard the weights past this size")->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  if (*random && out.empty()) {
    std::cerr << "osd-checkpoint random: --dir DIR is required (the folder to write)\n";
    return 2;
  }
  try {
    if (*random) {
      auto cfg = osd::ModelConfig::preset(preset);
      if (!cfg) throw osd::Error("unknown preset " + preset);
      if (variant == "tied") cfg->tie_word_embeddings = true;
      else if (variant == "qwen2") cfg->qkv_bias = true;
      else if (variant == "llama-bias") cfg->qkv_bias = cfg->o_bias = cfg->mlp_bias = true;
      else if (variant == "gqa") cfg->num_kv_heads = std::max<int64_t>(1, cfg->num_heads / 2);
      else if (variant == "mqa") cfg->num_kv_heads = 1;
      else if (variant == "mha") cfg->num_kv_heads = cfg->num_heads;
      else if (variant == "mistral") cfg->name = "MistralForCausalLM";
      else if (variant == "llama3-rope") {
        cfg->rope_scaling.type = osd::RopeScalingType::llama3;
        cfg->rope_scaling.factor = 8;
        cfg->rope_scaling.original_max_position_embeddings = 64;
        cfg->rope_theta = 500000;
      } else if (variant == "linear-rope") {
        cfg->rope_scaling.type = osd::RopeScalingType::linear;
        cfg->rope_scaling.factor = 4;
      } else if (variant != "llama") {
        throw osd::Error("unknown variant " + variant);
      }
      cfg->dtype = osd::parse_dtype(dtype).value_or(osd::DType::f32);
      osd::Transformer m(*cfg, seed);
      {
        torch::NoGradGuard g;
        auto gen = at::detail::createCPUGenerator(seed + 1);
        for (auto& p : m.named_parameters())
          p.value().copy_(p.value().dim() == 2 ? at::normal(0.0, stddev, p.value().sizes(), gen)
                                               : 1.0 + at::normal(0.0, 0.1, p.value().sizes(), gen));
      }
      osd::save_hf_checkpoint(out, m, shard_bytes);
      std::cout << out << "\n";
    } else if (*convert) {
      auto dt = osd::parse_dtype(dtype);
      if (!dt) throw osd::Error("unknown dtype " + dtype);
      osd::save_hf_checkpoint(out, *osd::load_hf_checkpoint(dir, c10::Device(c10::kCPU), *dt), shard_bytes);
      std::cout << out << "\n";
    } else {
      auto m = osd::load_hf_checkpoint(dir);
      auto l = m->forward_full(torch::tensor(tokens).view({1, -1}))[0].to(torch::kFloat64).contiguous();
      std::vector<double> flat(l.data_ptr<double>(), l.data_ptr<double>() + l.numel());
      std::cout << nlohmann::json{{"shape", l.sizes().vec()}, {"logits", flat}}.dump() << "\n";
    }
  } catch (const std::exception& e) {
    std::cerr << "osd-checkpoint: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
