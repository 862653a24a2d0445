#pragma once
// Hugging Face checkpoint folders: config.json + model.safetensors with HF tensor names
// (LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM). osd fuses Q/K/V and gate/up; these
// functions split and join them, so any HF tool loads what osd writes and osd loads HF folders.
#include <c10/core/Device.h>
#include <nlohmann/json.hpp>

#include <memory>
#include <optional>
#include <string>

#include "models/core/config.hpp"
#include "models/weights/hf_layout.hpp"

namespace osd {

class Transformer;

// Hugging Face's default shard size ("5GB").
constexpr uint64_t kDefaultMaxShardBytes = 5'000'000'000ULL;

// Writes dir/config.json and the weights (creating dir): model.safetensors, or past
// `max_shard_bytes` model-0000i-of-0000n.safetensors + model.safetensors.index.json, as
// transformers' save_pretrained does. Each file is written under a temporary name, fsynced and
// renamed, and the folder fsynced (files::commit_file).
void save_hf_checkpoint(const std::string& dir, const Transformer& model, uint64_t max_shard_bytes = kDefaultMaxShardBytes);
// Loads dir/config.json + dir/model.safetensors (or the shards model.safetensors.index.json
// names) to `device` in `dtype` (default: the config's). A folder with checksums.json (sealed by
// files::commit_folder) is checked first: a torn or corrupt file is an osd::Error naming it. Parameters are allocated once on the
// device and filled a tensor at a time: the weights never exist twice.
std::shared_ptr<Transformer> load_hf_checkpoint(const std::string& dir, c10::Device device = c10::Device(c10::kCPU),
                                                std::optional<DType> dtype = std::nullopt);

}  // namespace osd
