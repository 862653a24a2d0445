#include "models/text/decoder.hpp"

#include "models/text/byte_level.hpp"
#include "models/text/json_fields.hpp"
#include "models/text/regex.hpp"
#include "models/text/utf8.hpp"

namespace osd::text {

namespace {

class Sequence final : public Decoder {
 public:
  explicit Sequence(std::vector<std::unique_ptr<Decoder>> parts) : parts_(std::move(parts)) {}
  void apply(std::vector<std::string>& tokens,
             const std::unordered_set<std::string>& added) const override {
    for (const auto& p : parts_) p->apply(tokens, added);
  }

 private:
  std::vector<std::unique_ptr<Decoder>> parts_;
};

// Runs of ordinary tokens become their bytes, decoded as UTF-8 (lossy); added tokens stay as is.
class ByteLevel final : public Decoder {
 public:
  void apply(std::vector<std::string>& tokens,
             const std::unordered_set<std::string>& added) const override {
    std::vector<std::string> out;
    std::string run;
    bool in_run = false;
    for (auto& t : tokens) {
      if (added.count(t)) {
        if (in_run) out.push_back(lossy_utf8(chars_to_bytes(run)));
        run.clear();
        in_run = false;
        out.push_back(std::move(t));
      } else {
        run += t;
        in_run = true;
      }
    }
    if (in_run) out.push_back(lossy_utf8(chars_to_bytes(run)));
    tokens = std::move(out);
  }
};

// Consecutive <0xXX> tokens become their bytes, decoded as UTF-8 (lossy).
class ByteFallback final : public Decoder {
 public:
  void apply(std::vector<std::string>& tokens,
             const std::unordered_set<std::string>&) const override {
    std::vector<std::string> out;
    std::string bytes;
    for (auto& t : tokens) {
      int byte = -1;
      if (t.size() == 6 && t.compare(0, 3, "<0x") == 0 && t[5] == '>' &&
          std::isxdigit(static_cast<unsigned char>(t[3])) &&
          std::isxdigit(static_cast<unsigned char>(t[4])))
        byte = std::stoi(t.substr(3, 2), nullptr, 16);
      if (byte >= 0) {
        bytes += static_cast<char>(byte);
        continue;
      }
      if (!bytes.empty()) out.push_back(lossy_utf8(bytes));
      bytes.clear();
      out.push_back(std::move(t));
    }
    if (!bytes.empty()) out.push_back(lossy_utf8(bytes));
    tokens = std::move(out);
  }
};

class Fuse final : public Decoder {
 public:
  void apply(std::vector<std::string>& tokens,
             const std::unordered_set<std::string>&) const override {
    std::string all;
    for (const auto& t : tokens) all += t;
    tokens.assign(1, std::move(all));
  }
};

class Replace final : public Decoder {
 public:
  Replace(const std::string& pattern, std::string content, const std::string& where)
      : regex_(pattern, where), content_(std::move(content)) {}
  void apply(std::vector<std::string>& tokens,
             const std::unordered_set<std::string>&) const override {
    for (auto& t : tokens) t = regex_.replace_all(t, content_);
  }

 private:
  Regex regex_;
  std::string content_;
};

// Removes up to `start` leading and `stop` trailing copies of one character from each token.
class Strip final : public Decoder {
 public:
  Strip(std::string content, int64_t start, int64_t stop)
      : content_(std::move(content)), start_(start), stop_(stop) {}
  void apply(std::vector<std::string>& tokens,
             const std::unordered_set<std::string>&) const override {
    if (content_.empty()) return;
    for (auto& t : tokens) {
      size_t b = 0, e = t.size();
      for (int64_t i = 0; i < start_ && t.compare(b, content_.size(), content_) == 0 && b < e; ++i)
        b += content_.size();
      for (int64_t i = 0; i < stop_ && e >= b + content_.size() &&
                          t.compare(e - content_.size(), content_.size(), content_) == 0;
           ++i)
        e -= content_.size();
      t = t.substr(b, e - b);
    }
  }

 private:
  std::string content_;
  int64_t start_, stop_;
};

class Metaspace final : public Decoder {
 public:
  Metaspace(std::string replacement, bool strip_first)
      : replacement_(std::move(replacement)), strip_first_(strip_first) {}
  void apply(std::vector<std::string>& tokens,
             const std::unordered_set<std::string>&) const override {
    for (size_t i = 0; i < tokens.size(); ++i) {
      std::string out;
      const auto& t = tokens[i];
      for (size_t p = 0; p < t.size();) {
        if (!replacement_.empty() && t.compare(p, replacement_.size(), replacement_) == 0) {
          out += ' ';
          p += replacement_.size();
        } else {
          out += t[p++];
        }
      }
      if (i == 0 && strip_first_ && !out.empty() && out[0] == ' ') out.erase(0, 1);
      tokens[i] = std::move(out);
    }
  }

 private:
  std::string replacement_;
  bool strip_first_;
};

}  // namespace

std::unique_ptr<Decoder> make_decoder(const nlohmann::json& j, const std::string& where) {
  if (j.is_null()) return nullptr;
  const std::string type = field_string(j, "type", where);
  const std::string at = where + " (" + type + ")";
  if (type == "Sequence")
    return std::make_unique<Sequence>(make_list(j, "decoders", where, make_decoder));
  if (type == "ByteLevel") return std::make_unique<ByteLevel>();
  if (type == "ByteFallback") return std::make_unique<ByteFallback>();
  if (type == "Fuse") return std::make_unique<Fuse>();
  if (type == "Replace")
    return std::make_unique<Replace>(field_pattern(j, at), field_string(j, "content", at, ""), at);
  if (type == "Strip")
    return std::make_unique<Strip>(field_string(j, "content", at, " "),
                                   field_int(j, "start", at, 0), field_int(j, "stop", at, 0));
  if (type == "Metaspace") {
    bool strip = field_bool(j, "add_prefix_space", at, true);
    if (j.contains("prepend_scheme")) strip = field_string(j, "prepend_scheme", at) != "never";
    return std::make_unique<Metaspace>(field_string(j, "replacement", at, "\xE2\x96\x81"), strip);
  }
  throw Error(at + ": unsupported decoder type \"" + type + "\"");
}

}  // namespace osd::text
