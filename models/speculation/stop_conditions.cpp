#include "models/speculation/stop_conditions.hpp"

#include <algorithm>

#include "models/common/error.hpp"

namespace osd {

StopChecker::StopChecker(const GenerationRequest& req, TokenText text)
    : max_new_(req.max_new_tokens), eos_(req.eos_ids), stop_(req.stop), token_text_(std::move(text)) {
  for (const auto& s : stop_) {
    if (s.empty()) throw Error("stop strings must not be empty");
    longest_stop_ = std::max(longest_stop_, s.size());
  }
  if (!stop_.empty() && !token_text_) throw Error("stop strings need a tokenizer to decode tokens");
  if (max_new_ <= 0) finish_ = FinishReason::length;
}

size_t StopChecker::feed(const std::vector<int64_t>& tokens) {
  size_t kept = 0;
  for (int64_t t : tokens) {
    if (finish_ != FinishReason::none) break;
    tokens_.push_back(t);
    ++kept;
    if (std::find(eos_.begin(), eos_.end(), t) != eos_.end()) {
      finish_ = FinishReason::eos;
      break;
    }
    if (token_text_) {
      const size_t before = text_.size();
      text_ += token_text_(t);
      if (!stop_.empty()) {
        // Only a match that ends in the new bytes is new: search from before - (longest - 1).
        const size_t from = before >= longest_stop_ ? before - longest_stop_ + 1 : 0;
        size_t cut = std::string::npos;
        for (const auto& s : stop_) cut = std::min(cut, text_.find(s, from));
        if (cut != std::string::npos) {
          text_.resize(cut);
          finish_ = FinishReason::stop;
          break;
        }
      }
    }
    if (static_cast<int64_t>(tokens_.size()) >= max_new_) finish_ = FinishReason::length;
  }
  return kept;
}

}  // namespace osd
