#include "runtime/config_file.hpp"

#include <cctype>

namespace osd {
namespace {

class Reader {
 public:
  explicit Reader(const std::string& text) : text_(text) {}

  bool block(const std::string& prefix, int depth, std::vector<ConfigEntry>& out) {
    for (;;) {
      skip_space_and_comments();
      if (at_end()) return depth == 0 || fail("a group is not closed: '}' missing at the end of the file");
      if (peek() == '}') {
        if (depth == 0) return fail("'}' without an open group");
        ++pos_;
        return true;
      }
      const std::string name = word();
      if (name.empty()) return fail(std::string("expected a key, got '") + peek() + "'");
      skip_space_and_comments();
      if (!at_end() && peek() == '{') {
        ++pos_;
        if (!block(prefix + name + ".", depth + 1, out)) return false;
        continue;
      }
      if (at_end() || peek() != '=') return fail("expected '=' or '{' after '" + name + "'");
      ++pos_;
      skip_blanks();
      if (!at_end() && peek() == '{') {  // name = { ... }
        ++pos_;
        if (!block(prefix + name + ".", depth + 1, out)) return false;
        continue;
      }
      ConfigEntry entry{prefix + name, "", line_};
      if (!value(&entry.value)) return false;
      out.push_back(std::move(entry));
      skip_blanks();
      if (!at_end() && peek() == ',') ++pos_;
    }
  }

  const std::string& error() const { return error_; }

 private:
  bool at_end() const { return pos_ >= text_.size(); }
  char peek() const { return text_[pos_]; }
  bool fail(const std::string& why) {
    error_ = std::to_string(line_) + ": " + why;
    return false;
  }
  void skip_blanks() {
    while (!at_end() && (peek() == ' ' || peek() == '\t' || peek() == '\r')) ++pos_;
  }
  void skip_space_and_comments() {
    while (!at_end()) {
      const char c = peek();
      if (c == '\n') ++line_, ++pos_;
      else if (std::isspace(static_cast<unsigned char>(c))) ++pos_;
      else if (c == ';' || c == '#') while (!at_end() && peek() != '\n') ++pos_;
      else break;
    }
  }
  std::string word() {
    const size_t start = pos_;
    while (!at_end() && (std::isalnum(static_cast<unsigned char>(peek())) || peek() == '-' || peek() == '_' ||
                         peek() == '.'))
      ++pos_;
    return text_.substr(start, pos_ - start);
  }
  bool value(std::string* out) {
    if (at_end() || peek() == '\n') return fail("a value is missing after '='");
    const char c = peek();
    if (c == '[') return fail("lists are not supported here");
    if (c == '"' || c == '\'') {
      const char quote = c;
      ++pos_;
      while (!at_end() && peek() != quote) {
        char ch = peek();
        if (ch == '\n') return fail("a string is not closed on its line");
        if (ch == '\\' && pos_ + 1 < text_.size()) {
          ++pos_;
          const char e = peek();
          ch = e == 'n' ? '\n' : e == 't' ? '\t' : e;
        }
        out->push_back(ch);
        ++pos_;
      }
      if (at_end()) return fail("a string is not closed on its line");
      ++pos_;
      return true;
    }
    while (!at_end() && !std::isspace(static_cast<unsigned char>(peek())) && peek() != ';' && peek() != ',' &&
           peek() != '}')
      out->push_back(text_[pos_++]);
    if (out->empty()) return fail("a value is missing after '='");
    return true;
  }

  const std::string& text_;
  size_t pos_ = 0;
  int line_ = 1;
  std::string error_;
};

}  // namespace

std::optional<std::vector<ConfigEntry>> parse_config_text(const std::string& text, std::string* error) {
  Reader reader(text);
  std::vector<ConfigEntry> entries;
  if (!reader.block("", 0, entries)) {
    *error = reader.error();
    return std::nullopt;
  }
  return entries;
}

}  // namespace osd
