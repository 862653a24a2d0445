#include "models/core/config.hpp"

#include <map>
#include <sstream>

namespace osd {

const char* dtype_name(DType d) {
  switch (d) {
    case DType::f32: return "float32";
    case DType::bf16: return "bfloat16";
    case DType::f16: return "float16";
  }
  return "?";
}

std::optional<DType> parse_dtype(const std::string& name) {
  if (name == "float32" || name == "f32" || name == "fp32" || name == "F32") return DType::f32;
  if (name == "bfloat16" || name == "bf16" || name == "BF16") return DType::bf16;
  if (name == "float16" || name == "f16" || name == "fp16" || name == "half" || name == "F16")
    return DType::f16;
  return std::nullopt;
}

ModelConfig& ModelConfig::finalize() {
  if (head_dim == 0 && num_heads > 0) head_dim = hidden_size / num_heads;
  return *this;
}

std::string ModelConfig::validate() const {
  std::ostringstream e;
  auto positive = [&](const char* key, int64_t v) {
    if (v <= 0 && e.tellp() == 0) e << key << " must be > 0 (got " << v << ")";
  };
  positive("vocab_size", vocab_size);
  positive("hidden_size", hidden_size);
  positive("intermediate_size", intermediate_size);
  positive("num_hidden_layers", num_layers);
  positive("num_attention_heads", num_heads);
  positive("num_key_value_heads", num_kv_heads);
  positive("head_dim", head_dim);
  positive("max_position_embeddings", max_position_embeddings);
  if (e.tellp() != 0) return e.str();
  if (num_heads % num_kv_heads != 0)
    return "num_attention_heads (" + std::to_string(num_heads) +
           ") must be a multiple of num_key_value_heads (" + std::to_string(num_kv_heads) + ")";
  if (head_dim % 2 != 0) return "head_dim must be even for rotary embeddings (got " +
                                std::to_string(head_dim) + ")";
  if (!(rope_theta > 0)) return "rope_theta must be > 0";
  if (!(rms_norm_eps > 0)) return "rms_norm_eps must be > 0";
  if (rope_scaling.type != RopeScalingType::none && !(rope_scaling.factor > 0))
    return "rope_scaling.factor must be > 0";
  if (rope_scaling.type == RopeScalingType::llama3 &&
      !(rope_scaling.high_freq_factor > rope_scaling.low_freq_factor))
    return "rope_scaling: high_freq_factor must exceed low_freq_factor";
  if (vocab_size > (int64_t{1} << 31)) return "vocab_size is absurd (> 2^31)";
  return "";
}

int64_t ModelConfig::num_parameters() const {
  const int64_t h = hidden_size, q = num_heads * head_dim, kv = num_kv_heads * head_dim;
  int64_t attn = h * (q + 2 * kv) + q * h + (qkv_bias ? q + 2 * kv : 0) + (o_bias ? h : 0);
  int64_t mlp = 3 * h * intermediate_size + (mlp_bias ? 2 * intermediate_size + h : 0);
  int64_t layer = attn + mlp + 2 * h;
  int64_t emb = vocab_size * h * (tie_word_embeddings ? 1 : 2);
  return num_layers * layer + emb + h;
}

namespace {
ModelConfig make(const char* name, int64_t vocab, int64_t hidden, int64_t inter, int64_t layers,
                 int64_t heads, int64_t kv_heads, bool tied) {
  ModelConfig c;
  c.name = name;
  c.vocab_size = vocab;
  c.hidden_size = hidden;
  c.intermediate_size = inter;
  c.num_layers = layers;
  c.num_heads = heads;
  c.num_kv_heads = kv_heads;
  c.tie_word_embeddings = tied;
  return c.finalize();
}

const std::map<std::string, ModelConfig>& presets() {
  static const std::map<std::string, ModelConfig> table = [] {
    std::map<std::string, ModelConfig> t;
    // Test shapes: byte-level vocabularies, a few hundred thousand parameters.
    t["tiny"] = make("tiny", 256, 64, 172, 2, 4, 2, false);
    t["tiny-draft"] = make("tiny-draft", 256, 32, 86, 1, 2, 1, false);
    // Benchmark shapes (random weights).
    t["10m"] = make("10m", 8192, 256, 688, 8, 8, 8, false);           // ~10.5M
    t["100m"] = make("100m", 32000, 768, 2048, 12, 12, 12, true);      // ~110M
    t["llama-160m"] = make("llama-160m", 32000, 768, 3072, 12, 12, 12, false);  // paper's draft
    auto tl = make("tinyllama-1b", 32000, 2048, 5632, 22, 32, 4, false);  // TinyLlama 1.1B
    tl.max_position_embeddings = 2048;
    t["tinyllama-1b"] = tl;
    return t;
  }();
  return table;
}
}  // namespace

std::optional<ModelConfig> ModelConfig::preset(const std::string& name) {
  auto it = presets().find(name);
  if (it == presets().end()) return std::nullopt;
  return it->second;
}

std::vector<std::string> ModelConfig::preset_names() {
  std::vector<std::string> names;
  for (const auto& [k, v] : presets()) names.push_back(k);
  return names;
}

}  // namespace osd
