#pragma once
// A compiled Oniguruma regex: the engine Hugging Face tokenizers compiles tokenizer.json's
// Split patterns with, so \p{L}, \s, (?i:...) and look-ahead mean here what they mean there.
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace osd::text {

class Regex {
 public:
  // Throws osd::Error naming `where` and the pattern if it does not compile.
  Regex(const std::string& pattern, const std::string& where);
  ~Regex();
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  // Non-overlapping matches [begin, end) left to right in valid UTF-8 `s`; an empty match
  // advances one character.
  std::vector<std::pair<size_t, size_t>> find_all(std::string_view s) const;
  // `s` with every match replaced by `content`.
  std::string replace_all(std::string_view s, const std::string& content) const;
  const std::string& pattern() const { return pattern_; }

 private:
  std::string pattern_;
  void* regex_ = nullptr;  // OnigRegex; oniguruma.h stays out of this header
};

// Escapes `literal` so it matches itself.
std::string regex_escape(std::string_view literal);

}  // namespace osd::text
