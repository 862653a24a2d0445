#pragma once
// Stop conditions of one request: max new tokens, eos ids, and stop strings that may span
// tokens. Tokens are fed as they are emitted; the checker says how many of them to keep.
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "models/speculation/spec_types.hpp"

namespace osd {

// Text of one token (bytes, possibly part of a UTF-8 character). Needed only for stop strings.
using TokenText = std::function<std::string(int64_t token)>;

class StopChecker {
 public:
  StopChecker(const GenerationRequest& req, TokenText text);
  // Appends tokens in order until a condition fires; returns how many of `tokens` were kept.
  // The token that completes an eos or a stop string is kept; text() is cut before the stop
  // string.
  size_t feed(const std::vector<int64_t>& tokens);
  FinishReason finished() const { return finish_; }
  const std::vector<int64_t>& tokens() const { return tokens_; }
  const std::string& text() const { return text_; }
  int64_t remaining() const { return max_new_ - static_cast<int64_t>(tokens_.size()); }

 private:
  int64_t max_new_;
  std::vector<int64_t> eos_;
  std::vector<std::string> stop_;
  size_t longest_stop_ = 0;
  TokenText token_text_;
  std::vector<int64_t> tokens_;
  std::string text_;
  FinishReason finish_ = FinishReason::none;
};

}  // namespace osd
