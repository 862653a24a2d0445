#pragma once
// Training text for osd-train: one or more domains, each a token stream for training and one
// for evaluation. Files are plain text (a file is one document) or JSONL (one {"text": ...}
// object per line); documents are joined with a blank line. Tokens are bytes (byte-level
// models: token t < 256 is the byte t) unless a tokenizer is given (models/text/text_tokenizer.hpp).
//
//   auto corpus = TextCorpus::load({{"python", "python.train.txt"}}, {{"python",
//   "python.eval.txt"}}); Batch b = corpus.sample_batch(16, 256, rng);   // b.inputs, b.targets:
//   [16, 256] int64
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "models/text/text_tokenizer.hpp"

namespace osd {

struct CorpusFile {
  std::string domain;  // label (may be empty)
  std::string path;
};

struct TokenBatch {
  at::Tensor inputs;   // [B, T] int64
  at::Tensor targets;  // [B, T] int64 (inputs shifted by one)
};

struct CorpusDomain {
  std::string name;
  std::vector<int64_t> train, eval;
};

class TextCorpus {
 public:
  // Throws osd::Error naming the file (missing, unreadable, bad JSONL line, empty). Domains with
  // no eval file hold out the last eval_fraction of their training text; a domain with only eval
  // files is evaluated, never trained on.
  static TextCorpus load(const std::vector<CorpusFile>& train, const std::vector<CorpusFile>& eval,
                         double eval_fraction = 0.05, std::shared_ptr<const TextTokenizer> tokenizer = nullptr);
  // The text of a file as a token stream (bytes without a tokenizer); JSONL when the name ends
  // in .jsonl.
  static std::vector<int64_t> read_tokens(const std::string& path, const TextTokenizer* tokenizer = nullptr);

  const std::vector<CorpusDomain>& domains() const { return domains_; }
  int64_t train_tokens() const;
  // B random windows of T+1 tokens from the training streams; the domain of each window is drawn
  // in proportion to the domains' sizes. Throws when a stream is shorter than T + 1.
  TokenBatch sample_batch(int64_t B, int64_t T, std::mt19937_64& rng) const;
  // Deterministic evaluation windows: n windows of T+1 tokens spread evenly over every domain's
  // eval stream (the same windows on every call).
  std::vector<TokenBatch> eval_batches(int64_t B, int64_t T, int64_t n) const;

 private:
  std::vector<CorpusDomain> domains_;
};

}  // namespace osd
