#pragma once
// tokenizer.json "normalizer": text -> text before pre-tokenization (NFC for Qwen, Prepend +
// Replace for Llama-2/TinyLlama, ...). Built from JSON; an unknown type is a clear error.
#include <nlohmann/json_fwd.hpp>

#include <memory>
#include <string>

namespace osd::text {

class Normalizer {
 public:
  virtual ~Normalizer() = default;
  virtual std::string apply(std::string s) const = 0;
};

// nullptr for JSON null. `where` names the file and key in errors.
std::unique_ptr<Normalizer> make_normalizer(const nlohmann::json& j, const std::string& where);

}  // namespace osd::text
