#include "models/text/stream_decoder.hpp"

#include "models/text/utf8.hpp"

namespace osd {

namespace {

constexpr char kReplacement[] = "\xEF\xBF\xBD";

// An incomplete character at the end: U+FFFD from a lossy decoder, or raw bytes ("bytes").
bool unfinished(const std::string& s) {
  return (s.size() >= 3 && s.compare(s.size() - 3, 3, kReplacement) == 0) ||
         text::incomplete_tail(s) != 0;
}

}  // namespace

StreamDecoder::StreamDecoder(std::shared_ptr<const TextTokenizer> tokenizer,
                             std::vector<int64_t> context, bool skip_special)
    : tokenizer_(std::move(tokenizer)), ids_(std::move(context)), skip_special_(skip_special) {
  read_ = ids_.size();
  prefix_ = read_ > 5 ? read_ - 5 : 0;  // a few tokens of context: enough for spacing rules
}

std::string StreamDecoder::decode_range(size_t begin, size_t end) const {
  if (begin >= end) return {};
  return tokenizer_->decode(std::vector<int64_t>(ids_.begin() + static_cast<std::ptrdiff_t>(begin),
                                                 ids_.begin() + static_cast<std::ptrdiff_t>(end)),
                            skip_special_);
}

std::string StreamDecoder::push(int64_t id) {
  ids_.push_back(id);
  const std::string shown = decode_range(prefix_, read_);
  const std::string now = decode_range(prefix_, ids_.size());
  // Nothing new yet, or an incomplete character: wait, the window grows until it settles.
  if (now.size() <= shown.size() || unfinished(now)) return {};
  // What the new tokens add. (If a clean-up rule rewrote the window's earlier text, the text
  // past the shown length is still the new part: shown text is never re-emitted.)
  prefix_ = read_;
  read_ = ids_.size();
  return now.substr(shown.size());
}

std::string StreamDecoder::push(const std::vector<int64_t>& ids) {
  std::string out;
  for (auto id : ids) out += push(id);
  return out;
}

std::string StreamDecoder::finish() {
  if (read_ >= ids_.size()) return {};
  const std::string shown = decode_range(prefix_, read_);
  const std::string now = decode_range(prefix_, ids_.size());
  prefix_ = read_ = ids_.size();
  return now.size() > shown.size() ? now.substr(shown.size()) : std::string();
}

}  // namespace osd
