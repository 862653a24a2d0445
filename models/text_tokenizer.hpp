#pragma once
// Text <-> token ids for osd-train's corpora. Today one kind, "bytes" (token t < 256 is the
// byte t: the default pair, presets); the interface is where issue 3's tokenizers plug in
// (SentencePiece tokenizer.model, HF tokenizer.json). A SentencePiece path is refused with a
// clear error: linking Debian's libsentencepiece next to libtorch crashes at load (both bring
// protobuf), so it must be native code.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace osd {

class TextTokenizer {
 public:
  virtual ~TextTokenizer() = default;
  virtual std::vector<int64_t> encode(const std::string& text) const = 0;
  virtual std::string decode(const std::vector<int64_t>& ids) const = 0;
  virtual int64_t vocab_size() const = 0;
  virtual std::string name() const = 0;
};

// "bytes", a .model file, or a folder holding tokenizer.model. Throws osd::Error naming the file.
std::shared_ptr<const TextTokenizer> load_text_tokenizer(const std::string& spec);
bool sentencepiece_available();

}  // namespace osd
