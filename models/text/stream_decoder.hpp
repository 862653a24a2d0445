#pragma once
// Streaming detokenization: text per accepted token, never splitting a UTF-8 character and
// keeping each tokenizer's leading-space rules. Decodes a small window (the tokens already shown
// plus the new ones) and emits what the new tokens add, as text-generation servers do; a window
// that ends in an incomplete character (U+FFFD at its end) waits for the next token.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "models/text/text_tokenizer.hpp"

namespace osd {

class StreamDecoder {
 public:
  // `context`: tokens before the stream (the prompt); their text is not emitted but decides
  // spacing of the first streamed token.
  explicit StreamDecoder(std::shared_ptr<const TextTokenizer> tokenizer,
                         std::vector<int64_t> context = {}, bool skip_special = true);

  // The text that `id` makes final (possibly empty).
  std::string push(int64_t id);
  std::string push(const std::vector<int64_t>& ids);
  // Whatever is still held back (an incomplete character decodes as U+FFFD).
  std::string finish();

 private:
  std::string decode_range(size_t begin, size_t end) const;

  std::shared_ptr<const TextTokenizer> tokenizer_;
  std::vector<int64_t> ids_;
  size_t prefix_ = 0, read_ = 0;  // window start; end of the tokens already shown
  bool skip_special_;
};

}  // namespace osd
