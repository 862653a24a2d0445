// libFuzzer target: SentencePiece .model parsing on arbitrary bytes, then encode/decode with
// whatever loaded (scripts/fuzz.sh). Errors must be osd::Error; no crash, leak or UB.
#include <cstddef>
#include <cstdint>
#include <string>

#include "models/common/error.hpp"
#include "models/text/sentencepiece_model.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  try {
    const auto tok = osd::text::make_sentencepiece_tokenizer(bytes, "fuzz.model");
    const auto ids = tok->encode("Hello, world! 123 \xE6\x97\xA5\xE6\x9C\xAC \xF0\x9F\x98\x80  x");
    (void)tok->decode(ids);
  } catch (const osd::Error&) {
  }
  return 0;
}
