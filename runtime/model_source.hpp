#pragma once
// Where osd-serve, osd-bench and the examples get models from. A model spec is one of
//   "default"        the default pair's target or draft (models/default/{target,draft}; made by
//                    scripts/make-default-models.sh, docs/DEFAULT_MODELS.md)
//   a folder         a Hugging Face checkpoint (config.json + model.safetensors)
//   a preset name    random weights of that shape (ModelConfig::preset_names; tests, benchmarks)
#include <cstdint>
#include <memory>
#include <string>

namespace osd {

class Transformer;
class TextTokenizer;

enum class ModelRole { target, draft };

struct ModelSource {
  std::string spec;
  std::string device = "cpu";     // cpu | cuda | cuda:N
  std::string dtype = "float32";  // float32 | bfloat16 | float16
  uint64_t seed = 0;              // presets only
};

// The folder of the default pair: $OSD_DEFAULT_MODELS if set, else models/default under the
// current directory if it holds the pair, else the source tree's models/default.
std::string default_models_dir();

// Null and *error set (naming the spec, file or preset list) when the model cannot be made.
std::shared_ptr<Transformer> load_model(const ModelSource& source, ModelRole role,
                                        std::string* error);

// True when the model's tokens are bytes (token t < 256 is the byte t): presets and the default
// pair are; checkpoints with a vocabulary of at most 512 are taken to be.
bool is_byte_level(const Transformer& model, const std::string& spec);

// The serving tokenizer for setting `osd.tokenizer`: "auto" = the target folder's tokenizer
// files (tokenizer.json, tokenizer.model, encoder.json + vocab.bpe) when it has them, else bytes
// for byte-level models, else none; "none" = null; anything else is loaded as given. Throws
// osd::Error when it cannot be loaded or its vocabulary is larger than the target's.
std::shared_ptr<const TextTokenizer> serve_tokenizer(const std::string& setting, const std::string& target_spec,
                                                     const Transformer& target);

// The folder whose tokenizer_config.json (chat template, bos/eos strings) goes with setting
// `osd.tokenizer`: the target's folder for "auto", the folder named or the named file's folder,
// "" for "bytes" and "none".
std::string tokenizer_folder(const std::string& setting, const std::string& target_spec);

}  // namespace osd
