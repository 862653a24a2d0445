#include "models/weights/hf_layout.hpp"

#include <algorithm>
#include <tuple>

#include "models/common/error.hpp"
#include "models/common/files.hpp"

namespace osd {

using json = nlohmann::json;

json hf_config_json(const ModelConfig& c) {
  const bool qwen2 = c.qkv_bias && !c.o_bias;
  const bool mistral = !qwen2 && c.name == "MistralForCausalLM" && !c.qkv_bias && !c.o_bias && !c.mlp_bias;
  json j = {{"architectures", {qwen2 ? "Qwen2ForCausalLM" : mistral ? "MistralForCausalLM" : "LlamaForCausalLM"}},
            {"model_type", qwen2 ? "qwen2" : mistral ? "mistral" : "llama"},
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
  if (mistral) j["sliding_window"] = nullptr;  // osd attends to the whole context
  if (!qwen2 && !mistral) {
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

namespace {
ModelConfig parse_hf_config(const json& j, const std::string& file) {
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
  // Sliding-window attention (Mistral v0.1, Qwen2 with use_sliding_window) equals full attention
  // while a sequence fits the window; osd attends fully, so it caps the context at the window.
  const bool sliding = !qwen2 || j.value("use_sliding_window", false);
  if (sliding && j.contains("sliding_window") && j["sliding_window"].is_number_integer() && j["sliding_window"].get<int64_t>() > 0)
    c.max_position_embeddings = std::min(c.max_position_embeddings, j["sliding_window"].get<int64_t>());
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
  // Sizes a real checkpoint never reaches: products of two stay far from overflowing.
  for (auto [key, v, most] : {std::tuple{"hidden_size", c.hidden_size, int64_t{1} << 24},
                              {"intermediate_size", c.intermediate_size, int64_t{1} << 24},
                              {"num_hidden_layers", c.num_layers, int64_t{1} << 12},
                              {"num_attention_heads", c.num_heads, int64_t{1} << 16},
                              {"num_key_value_heads", c.num_kv_heads, int64_t{1} << 16},
                              {"head_dim", c.head_dim, int64_t{1} << 16},
                              {"max_position_embeddings", c.max_position_embeddings, int64_t{1} << 32}})
    if (v > most) throw Error(file + ": " + key + " is absurd (" + std::to_string(v) + " > " + std::to_string(most) + ")");
  c.finalize();
  if (auto e = c.validate(); !e.empty()) throw Error(file + ": " + e);
  return c;
}
}  // namespace

ModelConfig config_from_hf_json(const json& j, const std::string& file) {
  try {
    return parse_hf_config(j, file);
  } catch (const json::exception& e) {  // a value of the wrong type
    throw Error(file + ": " + e.what());
  }
}

std::vector<HfPiece> hf_pieces(const ModelConfig& c) {
  const int64_t V = c.vocab_size, H = c.hidden_size;
  std::vector<HfPiece> out = {{"model.embed_tokens.weight", "embed_tokens", 0, -1, {V, H}},
                              {"model.norm.weight", "norm", 0, -1, {H}}};
  if (!c.tie_word_embeddings) out.push_back({"lm_head.weight", "lm_head", 0, -1, {V, H}});
  const int64_t q = c.q_dim(), kv = c.kv_dim(), I = c.intermediate_size;
  for (int64_t l = 0; l < c.num_layers; ++l) {
    const std::string h = "model.layers." + std::to_string(l) + ".", o = "layers." + std::to_string(l) + ".";
    out.push_back({h + "input_layernorm.weight", o + "attn_norm", 0, -1, {H}});
    out.push_back({h + "post_attention_layernorm.weight", o + "mlp_norm", 0, -1, {H}});
    out.push_back({h + "self_attn.q_proj.weight", o + "wqkv", 0, q, {q, H}});
    out.push_back({h + "self_attn.k_proj.weight", o + "wqkv", q, kv, {kv, H}});
    out.push_back({h + "self_attn.v_proj.weight", o + "wqkv", q + kv, kv, {kv, H}});
    if (c.qkv_bias) {
      out.push_back({h + "self_attn.q_proj.bias", o + "bqkv", 0, q, {q}});
      out.push_back({h + "self_attn.k_proj.bias", o + "bqkv", q, kv, {kv}});
      out.push_back({h + "self_attn.v_proj.bias", o + "bqkv", q + kv, kv, {kv}});
    }
    out.push_back({h + "self_attn.o_proj.weight", o + "wo", 0, -1, {H, q}});
    if (c.o_bias) out.push_back({h + "self_attn.o_proj.bias", o + "bo", 0, -1, {H}});
    out.push_back({h + "mlp.gate_proj.weight", o + "w_gate_up", 0, I, {I, H}});
    out.push_back({h + "mlp.up_proj.weight", o + "w_gate_up", I, I, {I, H}});
    out.push_back({h + "mlp.down_proj.weight", o + "w_down", 0, -1, {H, I}});
    if (c.mlp_bias) {
      out.push_back({h + "mlp.gate_proj.bias", o + "b_gate_up", 0, I, {I}});
      out.push_back({h + "mlp.up_proj.bias", o + "b_gate_up", I, I, {I}});
      out.push_back({h + "mlp.down_proj.bias", o + "b_down", 0, -1, {H}});
    }
  }
  return out;
}

std::map<std::string, std::string> hf_weight_files(const std::string& dir) {
  const std::string index_path = dir + "/model.safetensors.index.json";
  if (!files::exists(index_path)) {
    if (!files::exists(dir + "/model.safetensors"))
      throw Error(dir + ": no model.safetensors or model.safetensors.index.json");
    return {};
  }
  const auto index = files::read_json(index_path);
  if (!index.is_object() || !index.contains("weight_map") || !index["weight_map"].is_object())
    throw Error(index_path + ": missing \"weight_map\" object");
  std::map<std::string, std::string> out;
  for (const auto& [tensor, file] : index["weight_map"].items()) {
    if (!file.is_string()) throw Error(index_path + ": weight_map entry '" + tensor + "' is not a file name");
    const auto name = file.get<std::string>();
    if (name.empty() || name.find('/') != std::string::npos || name == "..")
      throw Error(index_path + ": weight_map entry '" + tensor + "' names '" + name + "', not a file in this folder");
    out[tensor] = dir + "/" + name;
  }
  return out;
}

std::vector<HfTensorSource> plan_hf_checkpoint(const ModelConfig& config, const std::string& dir,
                                              const std::map<std::string, std::string>& shard_of,
                                              const std::map<std::string, SafetensorsHeader>& headers) {
  std::vector<HfTensorSource> out;
  for (const auto& p : hf_pieces(config)) {
    const std::string file = shard_of.empty() ? dir + "/model.safetensors"
                             : shard_of.count(p.hf) ? shard_of.at(p.hf)
                                                    : throw Error(dir + "/model.safetensors.index.json: no shard for tensor '" + p.hf + "'");
    auto h = headers.find(file);
    if (h == headers.end()) throw Error(file + ": no header read for this file");
    auto it = h->second.tensors.find(p.hf);
    if (it == h->second.tensors.end()) throw Error(file + ": missing tensor '" + p.hf + "'");
    if (it->second.shape != p.shape)
      throw Error(file + ": tensor '" + p.hf + "' has shape " + json(it->second.shape).dump() +
                  ", config.json implies " + json(p.shape).dump());
    out.push_back({p, file});
  }
  return out;
}

}  // namespace osd
