#pragma once
// Byte-pair encoding over a vocabulary and a ranked merge list: the model inside Hugging Face
// tokenizer.json files (GPT-2, Llama-3, Qwen, and with byte fallback Llama-2/Mistral) and, with
// merges derived from piece scores, SentencePiece BPE models.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace osd::text {

struct BpeOptions {
  std::optional<std::string> unk_token;
  bool byte_fallback = false;  // an unknown character becomes its <0xXX> byte tokens
  bool ignore_merges = false;  // a word that is itself in the vocabulary is one token
};

class BpeModel {
 public:
  // `where` names the file in errors. Throws osd::Error on a merge whose parts or result are
  // not in the vocabulary, or an unk_token that is not in it.
  BpeModel(std::vector<std::pair<std::string, int64_t>> vocab,
           const std::vector<std::pair<std::string, std::string>>& merges, BpeOptions options,
           const std::string& where, const std::vector<int32_t>* ranks = nullptr);
  // `ranks`: one per merge (equal ranks merge leftmost first); default: the merges' order.

  // Appends the ids of one pre-tokenized word (valid UTF-8).
  void encode_word(std::string_view word, std::vector<int64_t>& ids) const;

  int64_t token_to_id(std::string_view token) const;  // -1 if absent
  const std::string* id_to_token(int64_t id) const;   // nullptr if absent
  int64_t vocab_size() const { return static_cast<int64_t>(id_to_token_.size()); }
  size_t merge_count() const { return merges_.size(); }
  const BpeOptions& options() const { return options_; }

 private:
  struct Merge {
    int32_t rank;
    int32_t result;
  };
  static uint64_t pair_key(int64_t a, int64_t b) {
    return (static_cast<uint64_t>(a) << 32) | static_cast<uint32_t>(b);
  }
  void emit_unknown(std::string_view chars, std::vector<int64_t>& ids) const;

  BpeOptions options_;
  std::unordered_map<std::string, int64_t> token_to_id_;
  std::vector<std::string> id_to_token_;
  std::unordered_map<uint64_t, Merge> merges_;
  int64_t unk_id_ = -1;
  std::vector<int64_t> byte_ids_;  // <0xXX> token ids, or -1 (byte fallback)
};

}  // namespace osd::text
