#pragma once
// Text <-> token ids. One interface for every kind osd reads: Hugging Face tokenizer.json (BPE,
// byte-level or SentencePiece-style with byte fallback), SentencePiece .model files (parsed
// natively: Debian's libsentencepiece brings a protobuf that crashes next to libtorch's), GPT-2's
// encoder.json + vocab.bpe, and "bytes" (token t < 256 is byte t: the project's own models).
// Torch-free (library osd_text), so osd-tokenize and the fuzzers build without libtorch.
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace osd {

// Ids a model needs around text, from tokenizer_config.json / generation_config.json.
struct SpecialTokens {
  std::optional<int64_t> bos, eos, unk, pad;
  bool add_bos = false;  // prepend bos when encoding a prompt for the model
  bool add_eos = false;
};

class TextTokenizer {
 public:
  virtual ~TextTokenizer() = default;
  // Text -> ids, without bos/eos (see encode_prompt). Added/special token strings in the text
  // become their ids. Invalid UTF-8 is read as WHATWG does (U+FFFD per bad subpart).
  virtual std::vector<int64_t> encode(std::string_view text) const = 0;
  // Throws osd::Error on an id outside the vocabulary.
  virtual std::string decode(const std::vector<int64_t>& ids, bool skip_special = false) const = 0;
  virtual int64_t vocab_size() const = 0;
  virtual std::string name() const = 0;
  virtual int64_t token_to_id(std::string_view token) const { return -1; }
  virtual bool is_special(int64_t id) const { return false; }

  const SpecialTokens& special_tokens() const { return special_; }
  void set_special_tokens(SpecialTokens s) { special_ = s; }
  // encode() with bos/eos as the model expects them.
  std::vector<int64_t> encode_prompt(std::string_view text) const;

 protected:
  SpecialTokens special_;
};

// "bytes"; a tokenizer.json; a SentencePiece .model; or a folder holding tokenizer.json,
// tokenizer.model, or encoder.json + vocab.bpe (also vocab.json + merges.txt). A folder's
// tokenizer_config.json and generation_config.json give bos/eos. Throws osd::Error naming the
// file and key.
std::shared_ptr<const TextTokenizer> load_text_tokenizer(const std::string& spec);

// Copies the files of tokenizer `spec` into checkpoint folder `dir` (tokenizer.json,
// tokenizer_config.json, tokenizer.model, special_tokens_map.json, encoder.json + vocab.bpe, ...),
// so HF tools and osd-serve find the tokenizer next to the weights. "bytes" copies nothing.
void save_tokenizer_files(const std::string& spec, const std::string& dir);

}  // namespace osd
