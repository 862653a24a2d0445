#include "models/hf_checkpoint.hpp"

#include <torch/torch.h>

#include <fstream>

#include "models/error.hpp"
#include "models/files.hpp"
#include "models/safetensors.hpp"
#include "models/tensor_util.hpp"
#include "models/transformer.hpp"

namespace osd {

using json = nlohmann::json;

json hf_config_json(const ModelConfig& c) {
  const bool qwen2 = c.qkv_bias && !c.o_bias;
  json j = {{"architectures", {qwen2 ? "Qwen2ForCausalLM" : "LlamaForCausalLM"}},
            {"model_type", qwen2 ? "qwen2" : "llama"},
            {"vocab_size", c.vocab_size},
            {"hidden_size", c.hidden_size},
            {"intermediate_size", c.intermediate_size},
            {"num_hidden_layers", c.num_layers},
            {"num_attention_heads", c.num_heads},
            {"num_key_value_heads", c.num_kv_heads},
            {"head_dim", c.head_dim},
            {"max_position_embeddings", c.max_position_embeddings},
            {"rope_theta", c.rope_theta},
            {"rms_norm_eps", c.rms_norm_eps},
            {"tie_word_embeddings", c.tie_word_embeddings},
            {"hidden_act", "silu"},
            {"torch_dtype", dtype_name(c.dtype)},
            {"rope_scaling", nullptr}};
  if (!qwen2) {
    j["attention_bias"] = c.qkv_bias || c.o_bias;
    j["mlp_bias"] = c.mlp_bias;
  }
  const auto& r = c.rope_scaling;
  if (r.type == RopeScalingType::linear) j["rope_scaling"] = {{"rope_type", "linear"}, {"factor", r.factor}};
  if (r.type == RopeScalingType::llama3)
    j["rope_scaling"] = {{"rope_type", "llama3"}, {"factor", r.factor}, {"low_freq_factor", r.low_freq_factor},
                         {"high_freq_factor", r.high_freq_factor},
                         {"original_max_position_embeddings", r.original_max_position_embeddings}};
  return j;
}

ModelConfig config_from_hf_json(const json& j, const std::string& file) {
  auto need = [&](const char* key) -> const json& {
    if (!j.contains(key)) throw Error(file + ": missing key '" + key + "'");
    return j.at(key);
  };
  auto integer = [&](const char* key) {
    const auto& v = need(key);
    if (!v.is_number_integer()) throw Error(file + ": key '" + key + "' must be an integer");
    return v.get<int64_t>();
  };
  if (!j.is_object()) throw Error(file + ": not a JSON object");
  std::string arch;
  if (j.contains("architectures") && j["architectures"].is_array() && !j["architectures"].empty() &&
      j["architectures"][0].is_string())
    arch = j["architectures"][0].get<std::string>();
  const bool qwen2 = arch == "Qwen2ForCausalLM";
  if (arch != "LlamaForCausalLM" && arch != "MistralForCausalLM" && !qwen2)
    throw Error(file + ": unsupported architecture '" + arch + "' (LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM)");
  ModelConfig c;
  c.name = arch;
  c.vocab_size = integer("vocab_size");
  c.hidden_size = integer("hidden_size");
  c.intermediate_size = integer("intermediate_size");
  c.num_layers = integer("num_hidden_layers");
  c.num_heads = integer("num_attention_heads");
  c.num_kv_heads = j.contains("num_key_value_heads") && !j["num_key_value_heads"].is_null()
                       ? integer("num_key_value_heads") : c.num_heads;
  c.head_dim = j.contains("head_dim") && !j["head_dim"].is_null() ? integer("head_dim") : 0;
  if (j.contains("max_position_embeddings")) c.max_position_embeddings = integer("max_position_embeddings");
  if (j.contains("rope_theta")) c.rope_theta = j["rope_theta"].get<double>();
  if (j.contains("rms_norm_eps")) c.rms_norm_eps = j["rms_norm_eps"].get<double>();
  if (j.contains("tie_word_embeddings")) c.tie_word_embeddings = j["tie_word_embeddings"].get<bool>();
  if (qwen2) c.qkv_bias = true;
  if (j.value("attention_bias", false)) c.qkv_bias = c.o_bias = true;
  c.mlp_bias = j.value("mlp_bias", false);
  if (j.contains("torch_dtype") && j["torch_dtype"].is_string())
    c.dtype = parse_dtype(j["torch_dtype"].get<std::string>()).value_or(DType::f32);
  if (j.contains("rope_scaling") && j["rope_scaling"].is_object()) {
    const auto& r = j["rope_scaling"];
    const std::string type = r.value("rope_type", r.value("type", std::string("")));
    if (type == "linear") {
      c.rope_scaling.type = RopeScalingType::linear;
    } else if (type == "llama3") {
      c.rope_scaling.type = RopeScalingType::llama3;
      c.rope_scaling.low_freq_factor = r.value("low_freq_factor", 1.0);
      c.rope_scaling.high_freq_factor = r.value("high_freq_factor", 4.0);
      c.rope_scaling.original_max_position_embeddings = r.value("original_max_position_embeddings", int64_t{8192});
    } else if (type != "default") {
      throw Error(file + ": unsupported rope_scaling type '" + type + "'");
    }
    c.rope_scaling.factor = r.value("factor", 1.0);
  }
  c.finalize();
  if (auto e = c.validate(); !e.empty()) throw Error(file + ": " + e);
  return c;
}

namespace {
// HF name -> (osd parameter, row offset, rows) for every HF tensor of a config.
struct Piece {
  std::string hf, osd;
  int64_t row = 0, rows = -1;  // rows of the fused osd parameter; -1: the whole parameter
};
std::vector<Piece> pieces(const ModelConfig& c) {
  std::vector<Piece> out = {{"model.embed_tokens.weight", "embed_tokens"}, {"model.norm.weight", "norm"}};
  if (!c.tie_word_embeddings) out.push_back({"lm_head.weight", "lm_head"});
  const int64_t q = c.q_dim(), kv = c.kv_dim(), I = c.intermediate_size;
  for (int64_t l = 0; l < c.num_layers; ++l) {
    const std::string h = "model.layers." + std::to_string(l) + ".", o = "layers." + std::to_string(l) + ".";
    out.push_back({h + "input_layernorm.weight", o + "attn_norm"});
    out.push_back({h + "post_attention_layernorm.weight", o + "mlp_norm"});
    out.push_back({h + "self_attn.q_proj.weight", o + "wqkv", 0, q});
    out.push_back({h + "self_attn.k_proj.weight", o + "wqkv", q, kv});
    out.push_back({h + "self_attn.v_proj.weight", o + "wqkv", q + kv, kv});
    if (c.qkv_bias) {
      out.push_back({h + "self_attn.q_proj.bias", o + "bqkv", 0, q});
      out.push_back({h + "self_attn.k_proj.bias", o + "bqkv", q, kv});
      out.push_back({h + "self_attn.v_proj.bias", o + "bqkv", q + kv, kv});
    }
    out.push_back({h + "self_attn.o_proj.weight", o + "wo"});
    if (c.o_bias) out.push_back({h + "self_attn.o_proj.bias", o + "bo"});
    out.push_back({h + "mlp.gate_proj.weight", o + "w_gate_up", 0, I});
    out.push_back({h + "mlp.up_proj.weight", o + "w_gate_up", I, I});
    out.push_back({h + "mlp.down_proj.weight", o + "w_down"});
    if (c.mlp_bias) {
      out.push_back({h + "mlp.gate_proj.bias", o + "b_gate_up", 0, I});
      out.push_back({h + "mlp.up_proj.bias", o + "b_gate_up", I, I});
      out.push_back({h + "mlp.down_proj.bias", o + "b_down"});
    }
  }
  return out;
}
}  // namespace

void save_hf_checkpoint(const std::string& dir, const Transformer& model) {
  files::make_dirs(dir);
  auto params = model.named_parameters();
  std::map<std::string, at::Tensor> tensors;
  for (const auto& p : pieces(model.config())) {
    auto t = params[p.osd].detach();
    tensors[p.hf] = p.rows < 0 ? t : t.narrow(0, p.row, p.rows);
  }
  const std::string tmp = dir + "/model.safetensors.tmp";
  write_safetensors(tmp, tensors, {{"format", "pt"}});
  files::rename(tmp, dir + "/model.safetensors");
  std::ofstream(dir + "/config.json") << hf_config_json(model.config()).dump(2) << "\n";
}

std::shared_ptr<Transformer> load_hf_checkpoint(const std::string& dir, c10::Device device, std::optional<DType> dtype) {
  const std::string cfg_path = dir + "/config.json", st_path = dir + "/model.safetensors";
  std::ifstream cf(cfg_path);
  if (!cf) throw Error(cfg_path + ": cannot open");
  json j;
  try {
    cf >> j;
  } catch (const std::exception& e) {
    throw Error(cfg_path + ": invalid JSON: " + e.what());
  }
  auto cfg = config_from_hf_json(j, cfg_path);
  if (dtype) cfg.dtype = *dtype;
  auto header = read_safetensors_header(st_path);
  auto model = std::make_shared<Transformer>(cfg, 0, c10::Device(c10::kCPU));
  auto params = model->named_parameters();
  torch::NoGradGuard g;
  for (const auto& p : pieces(cfg)) {
    auto dst = params[p.osd];
    if (p.rows >= 0) dst = dst.narrow(0, p.row, p.rows);
    auto it = header.tensors.find(p.hf);
    if (it == header.tensors.end()) throw Error(st_path + ": missing tensor '" + p.hf + "'");
    if (it->second.shape != dst.sizes().vec())
      throw Error(st_path + ": tensor '" + p.hf + "' has shape " + json(it->second.shape).dump() + ", config.json implies " +
                  json(dst.sizes().vec()).dump());
    dst.copy_(read_safetensors_tensor(st_path, header, p.hf));
  }
  model->to_device(device, to_scalar_type(cfg.dtype));
  return model;
}

}  // namespace osd
