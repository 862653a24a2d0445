// libFuzzer target: the checkpoint loader's checks, without torch (models/weights/hf_layout.hpp):
// config.json parsing, the safetensors header, and the plan that finds every tensor the config
// implies with its shape. The input is config.json, a line "--", then the safetensors file.
// Errors must be osd::Error; no crash, leak or UB.
#include <cstddef>
#include <cstdint>
#include <string>

#include "models/common/error.hpp"
#include "models/weights/hf_layout.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  const auto cut = bytes.find("\n--\n");
  const std::string config_text = bytes.substr(0, cut);
  const std::string weights = cut == std::string::npos ? std::string() : bytes.substr(cut + 4);
  try {
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(config_text);
    } catch (const nlohmann::json::exception&) {
      return 0;  // osd's read_json turns this into an osd::Error naming the file
    }
    const auto config = osd::config_from_hf_json(j, "config.json");
    (void)osd::hf_config_json(config);
    const auto header = osd::parse_safetensors_header(weights, weights.size(), "model.safetensors");
    (void)osd::plan_hf_checkpoint(config, "dir", {}, {{"dir/model.safetensors", header}});
  } catch (const osd::Error&) {
  }
  return 0;
}
