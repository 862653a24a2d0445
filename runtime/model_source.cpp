#include "runtime/model_source.hpp"

#include <torch/torch.h>

#include <cstdlib>

#include "models/core/config.hpp"
#include "models/common/files.hpp"
#include "models/weights/hf_checkpoint.hpp"
#include "models/text/text_tokenizer.hpp"
#include "models/core/transformer.hpp"
#include "models/common/error.hpp"

#ifndef OSD_SOURCE_DIR
#define OSD_SOURCE_DIR "."
#endif

namespace osd {

std::string default_models_dir() {
  if (const char* env = std::getenv("OSD_DEFAULT_MODELS"); env && *env) return env;
  if (files::exists("models/default/target/config.json")) return "models/default";
  return std::string(OSD_SOURCE_DIR) + "/models/default";
}

std::shared_ptr<Transformer> load_model(const ModelSource& s, ModelRole role, std::string* error) {
  auto dt = parse_dtype(s.dtype);
  if (!dt) {
    *error = "unknown dtype '" + s.dtype + "' (float32, bfloat16, float16)";
    return nullptr;
  }
  try {
    const c10::Device device(s.device);
    std::string dir;
    if (s.spec == "default") {
      dir = default_models_dir() + (role == ModelRole::target ? "/target" : "/draft");
      if (!files::exists(dir + "/config.json")) {
        *error = "the default " + std::string(role == ModelRole::target ? "target" : "draft") +
                 " is missing (" + dir +
                 "/config.json); make it with scripts/make-default-models.sh";
        return nullptr;
      }
    } else if (files::exists(s.spec + "/config.json")) {
      dir = s.spec;
    }
    if (!dir.empty()) return load_hf_checkpoint(dir, device, *dt);
    auto cfg = ModelConfig::preset(s.spec);
    if (!cfg) {
      *error = "'" + s.spec +
               "' is neither a checkpoint folder (no config.json there) nor a preset (presets:";
      for (const auto& p : ModelConfig::preset_names()) *error += " " + p;
      *error += "; or \"default\")";
      return nullptr;
    }
    cfg->dtype = *dt;
    return std::make_shared<Transformer>(*cfg, s.seed, device);
  } catch (const std::exception& e) {
    *error = "cannot load model '" + s.spec + "': " + e.what();
    return nullptr;
  }
}

bool is_byte_level(const Transformer& model, const std::string& spec) {
  const int64_t v = model.config().vocab_size;
  if (ModelConfig::preset(spec)) return v >= 256;
  return v >= 256 && v <= 512;
}

std::shared_ptr<const TextTokenizer> serve_tokenizer(const std::string& setting, const std::string& target_spec,
                                                     const Transformer& target) {
  if (setting == "none") return nullptr;
  std::shared_ptr<const TextTokenizer> tok;
  if (setting == "auto") {
    const std::string dir = target_spec == "default" ? default_models_dir() + "/target" : target_spec;
    for (const char* f : {"/tokenizer.json", "/tokenizer.model", "/encoder.json", "/vocab.json"})
      if (files::exists(dir + f)) {
        tok = load_text_tokenizer(dir);
        break;
      }
    if (!tok && is_byte_level(target, target_spec)) tok = load_text_tokenizer("bytes");
    if (!tok) return nullptr;
  } else {
    tok = load_text_tokenizer(setting);
  }
  if (tok->vocab_size() > target.config().vocab_size)
    throw Error("tokenizer " + tok->name() + " has " + std::to_string(tok->vocab_size()) + " tokens, more than the target's vocabulary (" +
                std::to_string(target.config().vocab_size) + ")");
  return tok;
}

std::string tokenizer_folder(const std::string& setting, const std::string& target_spec) {
  if (setting == "none" || setting == "bytes") return "";
  if (setting == "auto") {
    const std::string dir = target_spec == "default" ? default_models_dir() + "/target" : target_spec;
    return files::is_dir(dir) ? dir : "";
  }
  if (files::is_dir(setting)) return setting;
  const auto slash = setting.rfind('/');
  return slash == std::string::npos ? "." : setting.substr(0, slash);
}

}  // namespace osd
