#pragma once
// tokenizer.json "decoder": token strings -> text (ByteLevel, ByteFallback + Fuse + Strip +
// Replace for Llama-2, Metaspace, Sequence). Each step maps a list of strings to a list, as in
// Hugging Face's decode_chain; the result is their concatenation.
#include <nlohmann/json_fwd.hpp>

#include <memory>
#include <string>
#include <unordered_set>
#include <vector>

namespace osd::text {

class Decoder {
 public:
  virtual ~Decoder() = default;
  // `added`: token strings that are added tokens (ByteLevel passes them through unmapped).
  virtual void apply(std::vector<std::string>& tokens,
                     const std::unordered_set<std::string>& added) const = 0;
};

std::unique_ptr<Decoder> make_decoder(const nlohmann::json& j, const std::string& where);

}  // namespace osd::text
