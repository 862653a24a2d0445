#include "models/weights/hf_checkpoint.hpp"

#include <torch/torch.h>

#include <cstdio>
#include <fstream>

#include "models/common/error.hpp"
#include "models/common/files.hpp"
#include "models/common/saved_folder.hpp"
#include "models/weights/safetensors.hpp"
#include "models/core/tensor_util.hpp"
#include "models/core/transformer.hpp"

namespace osd {

using json = nlohmann::json;

void save_hf_checkpoint(const std::string& dir, const Transformer& model, uint64_t max_shard_bytes) {
  if (max_shard_bytes == 0) throw Error("save_hf_checkpoint: max_shard_bytes must be positive");
  files::make_dirs(dir);
  // Checksums of the files this replaces would no longer hold.
  std::remove((dir + "/" + files::kChecksumsFile).c_str());
  auto params = model.named_parameters();
  // Shards in parameter order, each up to max_shard_bytes (a bigger tensor gets a shard alone).
  std::vector<std::map<std::string, at::Tensor>> shards(1);
  uint64_t shard_bytes = 0, total = 0;
  for (const auto& p : hf_pieces(model.config())) {
    auto t = params[p.osd].detach();
    if (p.rows >= 0) t = t.narrow(0, p.row, p.rows);
    const uint64_t bytes = static_cast<uint64_t>(t.numel()) * t.element_size();
    if (shard_bytes > 0 && shard_bytes + bytes > max_shard_bytes) {
      shards.emplace_back();
      shard_bytes = 0;
    }
    shards.back()[p.hf] = t;
    shard_bytes += bytes;
    total += bytes;
  }
  const std::string index_path = dir + "/model.safetensors.index.json";
  if (shards.size() == 1) {
    write_safetensors(dir + "/model.safetensors.tmp", shards[0], {{"format", "pt"}});
    files::commit_file(dir + "/model.safetensors.tmp", dir + "/model.safetensors");
    if (files::exists(index_path)) std::remove(index_path.c_str());  // a sharded save before this one
  } else {
    json weight_map = json::object();
    char name[64];
    for (size_t i = 0; i < shards.size(); ++i) {
      std::snprintf(name, sizeof name, "model-%05zu-of-%05zu.safetensors", i + 1, shards.size());
      write_safetensors(dir + "/" + name + ".tmp", shards[i], {{"format", "pt"}});
      files::commit_file(dir + "/" + name + ".tmp", dir + "/" + name);
      for (const auto& [tensor, t] : shards[i]) weight_map[tensor] = name;
    }
    files::write_durable(index_path,
                         json{{"metadata", {{"total_size", total}}}, {"weight_map", weight_map}}.dump(2) + "\n");
    const std::string single = dir + "/model.safetensors";
    if (files::exists(single)) std::remove(single.c_str());
  }
  files::write_durable(dir + "/config.json", hf_config_json(model.config()).dump(2) + "\n");
}

std::shared_ptr<Transformer> load_hf_checkpoint(const std::string& dir, c10::Device device, std::optional<DType> dtype) {
  // A folder osd sealed with checksums (saved_folder.hpp) is checked before anything is read.
  const auto sealed = files::check_folder(dir);
  if (sealed.state == files::FolderState::damaged) throw Error(dir + ": " + sealed.problem);
  const std::string cfg_path = dir + "/config.json";
  auto cfg = config_from_hf_json(files::read_json(cfg_path), cfg_path);
  if (dtype) cfg.dtype = *dtype;
  const auto shard_of = hf_weight_files(dir);
  // Every header valid and every tensor present with its shape before the model is allocated.
  std::map<std::string, SafetensorsHeader> headers;
  if (shard_of.empty()) headers.emplace(dir + "/model.safetensors", read_safetensors_header(dir + "/model.safetensors"));
  for (const auto& [tensor, file] : shard_of) {
    if (headers.count(file)) continue;
    if (!files::exists(file)) throw Error(file + ": shard named by model.safetensors.index.json does not exist");
    headers.emplace(file, read_safetensors_header(file));
  }
  const auto plan = plan_hf_checkpoint(cfg, dir, shard_of, headers);
  auto model = std::make_shared<Transformer>(cfg, device, Transformer::Uninitialized{});
  auto params = model->named_parameters();
  torch::NoGradGuard g;
  for (const auto& [p, file] : plan) {
    auto dst = params[p.osd];
    if (p.rows >= 0) dst = dst.narrow(0, p.row, p.rows);
    dst.copy_(read_safetensors_tensor(file, headers.at(file), p.hf));  // one tensor on the host at a time
  }
  return model;
}

}  // namespace osd
