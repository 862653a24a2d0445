#pragma once
// Model configuration for the Llama family (Llama 2/3, Vicuna, TinyLlama, Mistral, Qwen2).
// Plain data, no torch: runtime/ and actors/ include it freely.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace osd {

enum class DType { f32, bf16, f16 };
const char* dtype_name(DType d);
std::optional<DType> parse_dtype(const std::string& name);  // "float32", "bf16", ...

enum class RopeScalingType { none, linear, llama3 };

struct RopeScaling {
  RopeScalingType type = RopeScalingType::none;
  double factor = 1.0;                               // linear and llama3
  double low_freq_factor = 1.0;                      // llama3
  double high_freq_factor = 4.0;                     // llama3
  int64_t original_max_position_embeddings = 8192;   // llama3
};

struct ModelConfig {
  std::string name = "custom";
  int64_t vocab_size = 256;
  int64_t hidden_size = 64;
  int64_t intermediate_size = 172;
  int64_t num_layers = 2;
  int64_t num_heads = 4;
  int64_t num_kv_heads = 4;   // == num_heads: MHA; 1: MQA; between: GQA
  int64_t head_dim = 0;       // 0: hidden_size / num_heads (derived in finalize())
  int64_t max_position_embeddings = 2048;
  double rope_theta = 10000.0;
  RopeScaling rope_scaling;
  double rms_norm_eps = 1e-5;
  bool tie_word_embeddings = false;
  bool qkv_bias = false;      // Qwen2: true; Llama attention_bias: true (with o_bias)
  bool o_bias = false;        // Llama attention_bias only
  bool mlp_bias = false;      // Llama mlp_bias
  DType dtype = DType::f32;

  // Fills derived fields; call after setting fields by hand.
  ModelConfig& finalize();
  // Empty when the config is usable, otherwise what is wrong (first problem found).
  std::string validate() const;
  int64_t num_parameters() const;
  int64_t q_dim() const { return num_heads * head_dim; }
  int64_t kv_dim() const { return num_kv_heads * head_dim; }

  // Named shapes for tests and benchmarks (random weights): see preset_names().
  static std::optional<ModelConfig> preset(const std::string& name);
  static std::vector<std::string> preset_names();
};

}  // namespace osd
