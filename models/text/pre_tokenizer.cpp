#include "models/text/pre_tokenizer.hpp"

#include "models/text/byte_level.hpp"
#include "models/text/json_fields.hpp"
#include "models/text/regex.hpp"
#include "models/text/utf8.hpp"

namespace osd::text {

namespace {

// GPT-2's split, used by ByteLevel when use_regex is true (compiled by Oniguruma, as in HF).
constexpr const char* kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

enum class Behavior { Isolated, Removed, MergedWithPrevious, MergedWithNext, Contiguous };

// Splits `s` at `matches` as Hugging Face's SplitDelimiterBehavior does.
void split_at(const std::string& s, const std::vector<std::pair<size_t, size_t>>& matches,
              Behavior behavior, bool invert, std::vector<std::string>& out) {
  // Pieces alternate between gaps (not matched) and delimiters (matched); invert swaps roles.
  struct Piece {
    size_t b, e;
    bool delimiter;
  };
  std::vector<Piece> pieces;
  size_t last = 0;
  for (const auto& [b, e] : matches) {
    if (b > last) pieces.push_back({last, b, invert});
    pieces.push_back({b, e, !invert});
    last = e;
  }
  if (last < s.size()) pieces.push_back({last, s.size(), invert});
  std::vector<std::pair<size_t, size_t>> spans;
  for (size_t i = 0; i < pieces.size(); ++i) {
    const auto& p = pieces[i];
    switch (behavior) {
      case Behavior::Isolated:
        spans.push_back({p.b, p.e});
        break;
      case Behavior::Removed:
        if (!p.delimiter) spans.push_back({p.b, p.e});
        break;
      case Behavior::MergedWithPrevious:
        if (p.delimiter && !spans.empty() && i > 0 && !pieces[i - 1].delimiter)
          spans.back().second = p.e;
        else
          spans.push_back({p.b, p.e});
        break;
      case Behavior::MergedWithNext:
        if (i > 0 && pieces[i - 1].delimiter && !p.delimiter && !spans.empty())
          spans.back().second = p.e;
        else
          spans.push_back({p.b, p.e});
        break;
      case Behavior::Contiguous:
        if (i > 0 && p.delimiter && pieces[i - 1].delimiter && !spans.empty())
          spans.back().second = p.e;
        else
          spans.push_back({p.b, p.e});
        break;
    }
  }
  for (const auto& [b, e] : spans)
    if (e > b) out.push_back(s.substr(b, e - b));
}

class Sequence final : public PreTokenizer {
 public:
  explicit Sequence(std::vector<std::unique_ptr<PreTokenizer>> parts) : parts_(std::move(parts)) {}
  void apply(std::vector<std::string>& words, bool first) const override {
    for (const auto& p : parts_) p->apply(words, first);
  }

 private:
  std::vector<std::unique_ptr<PreTokenizer>> parts_;
};

class Split final : public PreTokenizer {
 public:
  Split(const std::string& pattern, Behavior behavior, bool invert, const std::string& where)
      : regex_(pattern, where), behavior_(behavior), invert_(invert) {}
  void apply(std::vector<std::string>& words, bool) const override {
    std::vector<std::string> out;
    for (const auto& w : words) split_at(w, regex_.find_all(w), behavior_, invert_, out);
    words = std::move(out);
  }

 private:
  Regex regex_;
  Behavior behavior_;
  bool invert_;
};

class ByteLevel final : public PreTokenizer {
 public:
  ByteLevel(bool add_prefix_space, bool use_regex, const std::string& where)
      : add_prefix_space_(add_prefix_space) {
    if (use_regex) regex_ = std::make_unique<Regex>(kGpt2Pattern, where);
  }
  void apply(std::vector<std::string>& words, bool) const override {
    std::vector<std::string> out;
    out.reserve(words.size());
    for (auto& w : words) {
      if (add_prefix_space_ && (w.empty() || w[0] != ' ')) w.insert(w.begin(), ' ');
      if (regex_) {
        for (const auto& [b, e] : regex_->find_all(w))
          out.push_back(bytes_to_chars(std::string_view(w).substr(b, e - b)));
      } else {
        out.push_back(bytes_to_chars(w));
      }
    }
    words = std::move(out);
  }

 private:
  bool add_prefix_space_;
  std::unique_ptr<Regex> regex_;
};

class Metaspace final : public PreTokenizer {
 public:
  enum class Prepend { Always, First, Never };
  Metaspace(std::string replacement, Prepend prepend, bool split)
      : replacement_(std::move(replacement)), prepend_(prepend), split_(split) {}
  void apply(std::vector<std::string>& words, bool first) const override {
    std::vector<std::string> out;
    for (const auto& w : words) {
      std::string s;
      for (char c : w) {
        if (c == ' ')
          s += replacement_;
        else
          s += c;
      }
      const bool prepend = prepend_ == Prepend::Always || (prepend_ == Prepend::First && first);
      if (prepend && s.compare(0, replacement_.size(), replacement_) != 0) s = replacement_ + s;
      if (!split_) {
        out.push_back(std::move(s));
        continue;
      }
      // Split before each replacement character (MergedWithNext).
      size_t start = 0;
      for (size_t pos = s.find(replacement_, 1); pos != std::string::npos;
           pos = s.find(replacement_, pos + 1)) {
        if (pos > start) out.push_back(s.substr(start, pos - start));
        start = pos;
      }
      if (start < s.size()) out.push_back(s.substr(start));
    }
    words = std::move(out);
  }

 private:
  std::string replacement_;
  Prepend prepend_;
  bool split_;
};

std::unique_ptr<PreTokenizer> regex_split(const std::string& pattern, Behavior behavior,
                                          const std::string& where) {
  return std::make_unique<Split>(pattern, behavior, false, where);
}

Behavior parse_behavior(const std::string& s, const std::string& where) {
  if (s == "Isolated") return Behavior::Isolated;
  if (s == "Removed") return Behavior::Removed;
  if (s == "MergedWithPrevious") return Behavior::MergedWithPrevious;
  if (s == "MergedWithNext") return Behavior::MergedWithNext;
  if (s == "Contiguous") return Behavior::Contiguous;
  throw Error(where + ": unknown split behavior \"" + s + "\"");
}

}  // namespace

std::unique_ptr<PreTokenizer> make_pre_tokenizer(const nlohmann::json& j,
                                                 const std::string& where) {
  if (j.is_null()) return nullptr;
  const std::string type = field_string(j, "type", where);
  const std::string at = where + " (" + type + ")";
  if (type == "Sequence")
    return std::make_unique<Sequence>(make_list(j, "pretokenizers", where, make_pre_tokenizer));
  if (type == "Split")
    return std::make_unique<Split>(field_pattern(j, at),
                                   parse_behavior(field_string(j, "behavior", at, "Isolated"), at),
                                   field_bool(j, "invert", at, false), at);
  if (type == "ByteLevel")
    return std::make_unique<ByteLevel>(field_bool(j, "add_prefix_space", at, true),
                                       field_bool(j, "use_regex", at, true), at);
  if (type == "Metaspace") {
    auto prepend = Metaspace::Prepend::Always;
    if (j.contains("prepend_scheme")) {
      const auto scheme = field_string(j, "prepend_scheme", at);
      if (scheme == "first")
        prepend = Metaspace::Prepend::First;
      else if (scheme == "never")
        prepend = Metaspace::Prepend::Never;
      else if (scheme != "always")
        throw Error(at + ": unknown prepend_scheme \"" + scheme + "\"");
    } else if (!field_bool(j, "add_prefix_space", at, true)) {
      prepend = Metaspace::Prepend::Never;
    }
    return std::make_unique<Metaspace>(field_string(j, "replacement", at, "\xE2\x96\x81"), prepend,
                                       field_bool(j, "split", at, true));
  }
  if (type == "Digits")
    return regex_split(field_bool(j, "individual_digits", at, false) ? R"(\p{Nd})" : R"(\p{Nd}+)",
                       Behavior::Isolated, at);
  if (type == "WhitespaceSplit")
    return std::make_unique<Split>(R"(\s+)", Behavior::Removed, false, at);
  if (type == "Whitespace")
    return std::make_unique<Split>(R"(\w+|[^\w\s]+)", Behavior::Removed, true, at);
  if (type == "Punctuation") return regex_split(R"(\p{P})", Behavior::Isolated, at);
  throw Error(at + ": unsupported pre_tokenizer type \"" + type + "\"");
}

}  // namespace osd::text
