#pragma once
// A Hugging Face checkpoint folder's layout, without torch (the loader's checks are fuzzed):
// config.json <-> ModelConfig, the HF tensors a config implies (names, shapes, and where each goes
// in osd's fused parameters), the shard index, and the plan that checks every tensor is present
// with its shape before any is read. models/weights/hf_checkpoint.hpp loads and saves with it.
#include <nlohmann/json.hpp>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "models/core/config.hpp"
#include "models/weights/safetensors_header.hpp"

namespace osd {

nlohmann::json hf_config_json(const ModelConfig& config);
// Throws osd::Error naming the file and key on a missing, mistyped or unsupported field.
ModelConfig config_from_hf_json(const nlohmann::json& j, const std::string& file);

// One HF tensor: its name, the osd parameter it is (a row range of it, for fused Q/K/V and
// gate/up) and its shape.
struct HfPiece {
  std::string hf, osd;
  int64_t row = 0, rows = -1;  // rows of the fused osd parameter; -1: the whole parameter
  std::vector<int64_t> shape;  // the HF tensor's shape
};
std::vector<HfPiece> hf_pieces(const ModelConfig& config);

// tensor name -> shard file, from dir/model.safetensors.index.json; empty when dir has the one
// model.safetensors. Throws osd::Error when neither exists or the index is malformed.
std::map<std::string, std::string> hf_weight_files(const std::string& dir);

// Where each tensor of `config` is read from, checked against the headers of the files
// (file -> header; every file shard_of names must be there): present, with the config's shape.
// Throws osd::Error naming the file and tensor.
struct HfTensorSource {
  HfPiece piece;
  std::string file;
};
std::vector<HfTensorSource> plan_hf_checkpoint(const ModelConfig& config, const std::string& dir,
                                              const std::map<std::string, std::string>& shard_of,
                                              const std::map<std::string, SafetensorsHeader>& headers);

}  // namespace osd
