// libFuzzer target: a fixed tokenizer's encode and decode (the byte tokenizer of the default pair
// and the tokenizer.json of the corpus) on arbitrary text and ids, and streaming decode. The
// first byte picks what the rest is: text to encode, or ids (16-bit little-endian) to decode.
// Invariants: the byte tokenizer round-trips any text; decode never throws on ids of the
// vocabulary; errors are osd::Error; no crash, leak or UB.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "models/common/error.hpp"
#include "models/common/files.hpp"
#include "models/text/stream_decoder.hpp"
#include "models/text/text_tokenizer.hpp"

#ifndef OSD_SOURCE_DIR
#define OSD_SOURCE_DIR "."
#endif

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const auto bytes_tok = osd::load_text_tokenizer("bytes");
  static const auto json_tok =
      osd::load_text_tokenizer(std::string(OSD_SOURCE_DIR) + "/tests/fuzz/corpus/tokenizer_json/tiny.json");
  if (size < 1) return 0;
  const auto& tok = (data[0] & 1) ? json_tok : bytes_tok;
  const bool as_ids = data[0] & 2;
  const std::string rest(reinterpret_cast<const char*>(data + 1), size - 1);
  try {
    if (!as_ids) {
      const auto ids = tok->encode(rest);
      for (auto id : ids)
        if (id < 0 || id >= tok->vocab_size()) std::abort();
      const std::string text = tok->decode(ids);
      if (tok == bytes_tok && text != rest) std::abort();  // bytes round-trip exactly
      osd::StreamDecoder stream(tok);
      std::string streamed;
      for (auto id : ids) streamed += stream.push(id);
      streamed += stream.finish();
      (void)streamed;
    } else {
      std::vector<int64_t> ids;
      for (size_t i = 0; i + 1 < rest.size(); i += 2) {
        const int64_t v = static_cast<uint8_t>(rest[i]) | (static_cast<uint8_t>(rest[i + 1]) << 8);
        ids.push_back(v % (tok->vocab_size() + 4) - 2);  // a few ids outside the vocabulary too
      }
      bool in_vocab = true;
      for (auto id : ids) in_vocab = in_vocab && id >= 0 && id < tok->vocab_size();
      try {
        (void)tok->decode(ids);
        osd::StreamDecoder stream(tok, {});
        for (auto id : ids) (void)stream.push(id);
        (void)stream.finish();
      } catch (const osd::Error&) {
        if (in_vocab) std::abort();  // ids of the vocabulary always decode
      }
    }
  } catch (const osd::Error&) {
  }
  return 0;
}
