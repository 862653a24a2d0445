// libFuzzer target: tokenizer.json loading on arbitrary bytes, then encode/decode/stream with
// whatever loaded (scripts/fuzz.sh). Errors must be osd::Error; no crash, leak or UB.
#include <nlohmann/json.hpp>

#include <cstddef>
#include <cstdint>
#include <string>

#include "models/common/error.hpp"
#include "models/text/hf_tokenizer.hpp"
#include "models/text/stream_decoder.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(bytes);
  } catch (const nlohmann::json::exception&) {
    return 0;  // osd turns this into "invalid JSON" before reaching the tokenizer
  }
  try {
    const auto tok = osd::text::make_hf_tokenizer(j, nullptr, "fuzz.json");
    const auto ids =
        tok->encode("Hello, world! 123 \xE6\x97\xA5\xE6\x9C\xAC <s> \xF0\x9F\x98\x80 ab\tc\n");
    (void)tok->decode(ids);
    osd::StreamDecoder stream(tok);
    for (auto id : ids) (void)stream.push(id);
    (void)stream.finish();
  } catch (const osd::Error&) {
  }
  return 0;
}
