#include "models/text/regex.hpp"

#include <oniguruma.h>

#include <mutex>

#include "models/common/error.hpp"
#include "models/text/utf8.hpp"

namespace osd::text {

namespace {

void initialize_oniguruma() {
  static std::once_flag once;
  std::call_once(once, [] {
    OnigEncoding encodings[] = {ONIG_ENCODING_UTF8};
    onig_initialize(encodings, 1);
  });
}

}  // namespace

Regex::Regex(const std::string& pattern, const std::string& where) : pattern_(pattern) {
  initialize_oniguruma();
  OnigRegex reg = nullptr;
  OnigErrorInfo info;
  const auto* p = reinterpret_cast<const OnigUChar*>(pattern.data());
  const int rc = onig_new(&reg, p, p + pattern.size(), ONIG_OPTION_NONE, ONIG_ENCODING_UTF8,
                          ONIG_SYNTAX_DEFAULT, &info);
  if (rc != ONIG_NORMAL) {
    OnigUChar message[ONIG_MAX_ERROR_MESSAGE_LEN];
    onig_error_code_to_str(message, rc, &info);
    throw Error(where + ": regex /" + pattern +
                "/ does not compile: " + reinterpret_cast<char*>(message));
  }
  regex_ = reg;
}

Regex::~Regex() {
  if (regex_) onig_free(static_cast<OnigRegex>(regex_));
}

std::vector<std::pair<size_t, size_t>> Regex::find_all(std::string_view s) const {
  std::vector<std::pair<size_t, size_t>> matches;
  auto* reg = static_cast<OnigRegex>(regex_);
  OnigRegion* region = onig_region_new();
  const auto* begin = reinterpret_cast<const OnigUChar*>(s.data());
  const auto* end = begin + s.size();
  size_t pos = 0;
  while (pos <= s.size()) {
    const int r = onig_search(reg, begin, end, begin + pos, end, region, ONIG_OPTION_NONE);
    if (r < 0) break;  // ONIG_MISMATCH (or an engine error: no further matches)
    const auto b = static_cast<size_t>(region->beg[0]);
    const auto e = static_cast<size_t>(region->end[0]);
    if (e > b) {
      matches.emplace_back(b, e);
      pos = e;
    } else {
      if (b >= s.size()) break;
      size_t n = valid_sequence_length(s, b);
      pos = b + (n ? n : 1);
    }
  }
  onig_region_free(region, 1);
  return matches;
}

std::string Regex::replace_all(std::string_view s, const std::string& content) const {
  std::string out;
  size_t last = 0;
  for (const auto& [b, e] : find_all(s)) {
    out.append(s.substr(last, b - last));
    out += content;
    last = e;
  }
  out.append(s.substr(last));
  return out;
}

std::string regex_escape(std::string_view literal) {
  std::string out;
  for (char c : literal) {
    if (std::string_view("\\^$.|?*+()[]{}-/").find(c) != std::string_view::npos) out += '\\';
    out += c;
  }
  return out;
}

}  // namespace osd::text
