#pragma once
// tokenizer.json "pre_tokenizer": splits normalized text into words the model encodes one by one
// (regex Split, ByteLevel, Metaspace, Digits, WhitespaceSplit, Sequence).
#include <nlohmann/json_fwd.hpp>

#include <memory>
#include <string>
#include <vector>

namespace osd::text {

class PreTokenizer {
 public:
  virtual ~PreTokenizer() = default;
  // Replaces each word by its pieces. `first_section`: the text starts the input (no added
  // token before it), which Metaspace's prepend_scheme "first" looks at.
  virtual void apply(std::vector<std::string>& words, bool first_section) const = 0;
};

std::unique_ptr<PreTokenizer> make_pre_tokenizer(const nlohmann::json& j, const std::string& where);

}  // namespace osd::text
