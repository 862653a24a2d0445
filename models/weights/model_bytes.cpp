#include "models/weights/model_bytes.hpp"

#include <torch/torch.h>
#include <torch/csrc/jit/serialization/pickle.h>

#include <nlohmann/json.hpp>

#include "models/common/error.hpp"
#include "models/core/transformer.hpp"

namespace osd {

namespace {
nlohmann::json config_json(const ModelConfig& c) {
  return {{"name", c.name}, {"vocab_size", c.vocab_size}, {"hidden_size", c.hidden_size},
          {"intermediate_size", c.intermediate_size}, {"num_layers", c.num_layers}, {"num_heads", c.num_heads},
          {"num_kv_heads", c.num_kv_heads}, {"head_dim", c.head_dim},
          {"max_position_embeddings", c.max_position_embeddings}, {"rope_theta", c.rope_theta},
          {"rope_type", static_cast<int>(c.rope_scaling.type)}, {"rope_factor", c.rope_scaling.factor},
          {"rope_low", c.rope_scaling.low_freq_factor}, {"rope_high", c.rope_scaling.high_freq_factor},
          {"rope_orig", c.rope_scaling.original_max_position_embeddings}, {"rms_norm_eps", c.rms_norm_eps},
          {"tie", c.tie_word_embeddings}, {"qkv_bias", c.qkv_bias}, {"o_bias", c.o_bias}, {"mlp_bias", c.mlp_bias},
          {"dtype", dtype_name(c.dtype)}};
}
ModelConfig config_from(const nlohmann::json& j) {
  ModelConfig c;
  c.name = j.at("name");
  c.vocab_size = j.at("vocab_size");
  c.hidden_size = j.at("hidden_size");
  c.intermediate_size = j.at("intermediate_size");
  c.num_layers = j.at("num_layers");
  c.num_heads = j.at("num_heads");
  c.num_kv_heads = j.at("num_kv_heads");
  c.head_dim = j.at("head_dim");
  c.max_position_embeddings = j.at("max_position_embeddings");
  c.rope_theta = j.at("rope_theta");
  c.rope_scaling.type = static_cast<RopeScalingType>(j.at("rope_type").get<int>());
  c.rope_scaling.factor = j.at("rope_factor");
  c.rope_scaling.low_freq_factor = j.at("rope_low");
  c.rope_scaling.high_freq_factor = j.at("rope_high");
  c.rope_scaling.original_max_position_embeddings = j.at("rope_orig");
  c.rms_norm_eps = j.at("rms_norm_eps");
  c.tie_word_embeddings = j.at("tie");
  c.qkv_bias = j.at("qkv_bias");
  c.o_bias = j.at("o_bias");
  c.mlp_bias = j.at("mlp_bias");
  c.dtype = parse_dtype(j.at("dtype").get<std::string>()).value_or(DType::f32);
  return c;
}
}  // namespace

std::vector<char> model_to_bytes(const Transformer& model) {
  c10::impl::GenericList list(c10::AnyType::get());
  list.push_back(config_json(model.config()).dump());
  for (const auto& p : model.named_parameters()) list.push_back(p.value().detach().cpu());
  return torch::jit::pickle_save(list);
}

std::shared_ptr<const Transformer> model_from_bytes(const std::vector<char>& bytes) {
  try {
    auto list = torch::jit::pickle_load(bytes).toList();
    auto cfg = config_from(nlohmann::json::parse(list.get(0).toStringRef()));
    auto model = std::make_shared<Transformer>(cfg, 0);
    torch::NoGradGuard g;
    size_t i = 1;
    for (auto& p : model->named_parameters()) {
      if (i >= list.size()) throw Error("too few tensors");
      p.value().copy_(list.get(i++).toTensor());
    }
    if (i != list.size()) throw Error("too many tensors");
    return model;
  } catch (const std::exception& e) {
    throw Error(std::string("cannot decode serialized weights: ") + e.what());
  }
}

}  // namespace osd
