#include "models/text/normalizer.hpp"

#include <vector>

#include "models/text/json_fields.hpp"
#include "models/text/regex.hpp"
#include "models/text/utf8.hpp"

namespace osd::text {

std::string field_pattern(const nlohmann::json& j, const std::string& where) {
  auto it = j.find("pattern");
  if (it == j.end() || !it->is_object())
    throw Error(where + ": \"pattern\" must be {\"String\": ...} or {\"Regex\": ...}");
  if (it->contains("String")) return regex_escape(field_string(*it, "String", where + ".pattern"));
  if (it->contains("Regex")) return field_string(*it, "Regex", where + ".pattern");
  throw Error(where + ": \"pattern\" must be {\"String\": ...} or {\"Regex\": ...}");
}

namespace {

class Sequence final : public Normalizer {
 public:
  explicit Sequence(std::vector<std::unique_ptr<Normalizer>> parts) : parts_(std::move(parts)) {}
  std::string apply(std::string s) const override {
    for (const auto& p : parts_) s = p->apply(std::move(s));
    return s;
  }

 private:
  std::vector<std::unique_ptr<Normalizer>> parts_;
};

class Unicode final : public Normalizer {
 public:
  explicit Unicode(NormalForm form) : form_(form) {}
  std::string apply(std::string s) const override { return normalize(s, form_); }

 private:
  NormalForm form_;
};

class Lowercase final : public Normalizer {
 public:
  std::string apply(std::string s) const override { return lowercase(s); }
};

class Prepend final : public Normalizer {
 public:
  explicit Prepend(std::string prefix) : prefix_(std::move(prefix)) {}
  std::string apply(std::string s) const override { return s.empty() ? s : prefix_ + s; }

 private:
  std::string prefix_;
};

class Replace final : public Normalizer {
 public:
  Replace(const std::string& pattern, std::string content, const std::string& where)
      : regex_(pattern, where), content_(std::move(content)) {}
  std::string apply(std::string s) const override { return regex_.replace_all(s, content_); }

 private:
  Regex regex_;
  std::string content_;
};

class Strip final : public Normalizer {
 public:
  Strip(bool left, bool right) : left_(left), right_(right) {}
  std::string apply(std::string s) const override { return trim_whitespace(s, left_, right_); }

 private:
  bool left_, right_;
};

}  // namespace

std::unique_ptr<Normalizer> make_normalizer(const nlohmann::json& j, const std::string& where) {
  if (j.is_null()) return nullptr;
  const std::string type = field_string(j, "type", where);
  const std::string at = where + " (" + type + ")";
  if (type == "Sequence")
    return std::make_unique<Sequence>(make_list(j, "normalizers", where, make_normalizer));
  if (type == "NFC") return std::make_unique<Unicode>(NormalForm::NFC);
  if (type == "NFD") return std::make_unique<Unicode>(NormalForm::NFD);
  if (type == "NFKC") return std::make_unique<Unicode>(NormalForm::NFKC);
  if (type == "NFKD") return std::make_unique<Unicode>(NormalForm::NFKD);
  if (type == "Lowercase") return std::make_unique<Lowercase>();
  if (type == "Prepend") return std::make_unique<Prepend>(field_string(j, "prepend", at));
  if (type == "Replace")
    return std::make_unique<Replace>(field_pattern(j, at), field_string(j, "content", at, ""), at);
  if (type == "Strip")
    return std::make_unique<Strip>(field_bool(j, "strip_left", at, true),
                                   field_bool(j, "strip_right", at, true));
  throw Error(at + ": unsupported normalizer type \"" + type + "\"");
}

}  // namespace osd::text
