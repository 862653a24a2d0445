#include "models/text/hf_tokenizer.hpp"

#include <array>
#include <nlohmann/json.hpp>
#include <unordered_map>
#include <unordered_set>

#include "models/common/files.hpp"
#include "models/text/bpe.hpp"
#include "models/text/decoder.hpp"
#include "models/text/json_fields.hpp"
#include "models/text/normalizer.hpp"
#include "models/text/pre_tokenizer.hpp"
#include "models/text/utf8.hpp"

namespace osd::text {

namespace {

struct AddedToken {
  std::string content;
  int64_t id = -1;
  bool special = false, lstrip = false, rstrip = false, normalized = false;
};

// Leftmost-longest matching of added tokens' contents (as the reference splitters do).
class AddedTokenSplitter {
 public:
  struct Section {
    std::string text;
    int64_t added = -1;  // index into the token list, or -1 for ordinary text
  };
  void add(const std::string& content, int64_t index) {
    if (content.empty()) return;
    auto& list = by_first_byte_[static_cast<unsigned char>(content[0])];
    list.push_back({content, index});
    std::stable_sort(list.begin(), list.end(),
                     [](const auto& a, const auto& b) { return a.first.size() > b.first.size(); });
    any_ = true;
  }
  std::vector<Section> split(const std::string& text) const {
    std::vector<Section> out;
    if (!any_) {
      if (!text.empty()) out.push_back({text, -1});
      return out;
    }
    size_t start = 0, i = 0;
    while (i < text.size()) {
      const auto& list = by_first_byte_[static_cast<unsigned char>(text[i])];
      const std::pair<std::string, int64_t>* match = nullptr;
      for (const auto& candidate : list)
        if (text.compare(i, candidate.first.size(), candidate.first) == 0) {
          match = &candidate;  // the list is longest first
          break;
        }
      if (!match) {
        ++i;
        continue;
      }
      if (i > start) out.push_back({text.substr(start, i - start), -1});
      out.push_back({match->first, match->second});
      i += match->first.size();
      start = i;
    }
    if (start < text.size()) out.push_back({text.substr(start), -1});
    return out;
  }

 private:
  std::array<std::vector<std::pair<std::string, int64_t>>, 256> by_first_byte_;
  bool any_ = false;
};

// transformers' clean_up_tokenization (tokenizer_config.json "clean_up_tokenization_spaces").
std::string clean_up_tokenization(std::string s) {
  static const std::pair<const char*, const char*> rules[] = {
      {" .", "."},     {" ?", "?"},   {" !", "!"},   {" ,", ","},     {" ' ", "'"},
      {" n't", "n't"}, {" 'm", "'m"}, {" 's", "'s"}, {" 've", "'ve"}, {" 're", "'re"}};
  for (const auto& [from, to] : rules) {
    std::string out;
    const std::string f = from;
    size_t last = 0;
    for (size_t p = s.find(f); p != std::string::npos; p = s.find(f, p + f.size())) {
      out.append(s, last, p - last);
      out += to;
      last = p + f.size();
    }
    out.append(s, last, std::string::npos);
    s = std::move(out);
  }
  return s;
}

// "<s>" or {"content": "<s>", ...} (tokenizer_config.json writes both).
std::optional<std::string> token_string(const nlohmann::json& config, const char* key) {
  if (!config.is_object() || !config.contains(key)) return std::nullopt;
  const auto& v = config[key];
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content") && v["content"].is_string())
    return v["content"].get<std::string>();
  return std::nullopt;
}

class HfTokenizer final : public TextTokenizer {
 public:
  HfTokenizer(const nlohmann::json& j, const nlohmann::json& config, const std::string& where)
      : where_(where) {
    if (!j.is_object()) throw Error(where + ": not a JSON object");
    const auto& model =
        j.contains("model") ? j["model"] : throw Error(where + ": missing \"model\"");
    const std::string type = field_string(model, "type", where + ": model", "BPE");
    if (type != "BPE")
      throw Error(where + ": model type \"" + type + "\" is not supported (BPE only)");
    model_ = make_bpe(model, where + ": model");
    normalizer_ = make_normalizer(j.value("normalizer", nlohmann::json()), where + ": normalizer");
    pre_tokenizer_ =
        make_pre_tokenizer(j.value("pre_tokenizer", nlohmann::json()), where + ": pre_tokenizer");
    decoder_ = make_decoder(j.value("decoder", nlohmann::json()), where + ": decoder");
    read_added_tokens(j.value("added_tokens", nlohmann::json::array()), where + ": added_tokens");
    if (config.is_object()) {
      cleanup_ = field_bool(config, "clean_up_tokenization_spaces",
                            where + ": tokenizer_config.json", false);
      if (config.contains("additional_special_tokens") &&
          config["additional_special_tokens"].is_array())
        for (const auto& t : config["additional_special_tokens"])
          if (t.is_string()) mark_special(t.get<std::string>());
    }
    read_special_tokens(j, config);
  }

  std::vector<int64_t> encode(std::string_view raw) const override {
    const std::string text = is_valid_utf8(raw) ? std::string(raw) : lossy_utf8(raw);
    std::vector<int64_t> ids;
    auto sections = unnormalized_.split(text);
    strip_around_added(sections);
    for (size_t i = 0; i < sections.size(); ++i) {
      const auto& section = sections[i];
      if (section.text.empty()) continue;
      if (section.added >= 0) {
        ids.push_back(added_[static_cast<size_t>(section.added)].id);
        continue;
      }
      const std::string normalized = normalizer_ ? normalizer_->apply(section.text) : section.text;
      if (normalized.empty()) continue;
      auto parts = normalized_.split(normalized);
      strip_around_added(parts);
      for (const auto& part : parts) {
        if (part.text.empty()) continue;
        if (part.added >= 0) {
          ids.push_back(added_[static_cast<size_t>(part.added)].id);
          continue;
        }
        std::vector<std::string> words{part.text};
        if (pre_tokenizer_) pre_tokenizer_->apply(words, i == 0);
        for (const auto& w : words) model_->encode_word(w, ids);
      }
    }
    return ids;
  }

  std::string decode(const std::vector<int64_t>& ids, bool skip_special) const override {
    std::vector<std::string> tokens;
    tokens.reserve(ids.size());
    for (auto id : ids) {
      const std::string* token = nullptr;
      if (auto it = added_by_id_.find(id); it != added_by_id_.end())
        token = &added_[it->second].content;
      else
        token = model_->id_to_token(id);
      if (!token || (token->empty() && !added_by_id_.count(id)))
        throw Error(where_ + ": token id " + std::to_string(id) +
                    " is not in the vocabulary (size " + std::to_string(vocab_size()) + ")");
      if (skip_special && special_strings_.count(*token)) continue;
      tokens.push_back(*token);
    }
    std::string text;
    if (decoder_) {
      decoder_->apply(tokens, added_strings_);
      for (const auto& t : tokens) text += t;
    } else {
      for (size_t i = 0; i < tokens.size(); ++i) text += (i ? " " : "") + tokens[i];
    }
    return cleanup_ ? clean_up_tokenization(std::move(text)) : text;
  }

  int64_t vocab_size() const override { return std::max(model_->vocab_size(), max_added_id_ + 1); }
  std::string name() const override { return where_; }
  int64_t token_to_id(std::string_view token) const override {
    for (const auto& a : added_)
      if (a.content == token) return a.id;
    return model_->token_to_id(token);
  }
  bool is_special(int64_t id) const override {
    auto it = added_by_id_.find(id);
    return it != added_by_id_.end() && special_strings_.count(added_[it->second].content);
  }

 private:
  static std::unique_ptr<BpeModel> make_bpe(const nlohmann::json& m, const std::string& where) {
    for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"})
      if (!field_string(m, key, where, "").empty())
        throw Error(where + ": \"" + key + "\" is not supported (GPT-2/Llama/Qwen-style BPE only)");
    if (!m.contains("vocab") || !m["vocab"].is_object())
      throw Error(where + ": \"vocab\" must be an object {token: id}");
    std::vector<std::pair<std::string, int64_t>> vocab;
    vocab.reserve(m["vocab"].size());
    for (const auto& [token, id] : m["vocab"].items()) {
      if (!id.is_number_integer())
        throw Error(where + ": vocab id of '" + token + "' is not an integer");
      vocab.emplace_back(token, id.get<int64_t>());
    }
    std::vector<std::pair<std::string, std::string>> merges;
    if (m.contains("merges")) {
      if (!m["merges"].is_array()) throw Error(where + ": \"merges\" must be an array");
      merges.reserve(m["merges"].size());
      for (const auto& merge : m["merges"]) {
        if (merge.is_string()) {
          const auto s = merge.get<std::string>();
          const auto space = s.find(' ', 1);
          if (space == std::string::npos)
            throw Error(where + ": merge \"" + s + "\" is not two tokens separated by a space");
          merges.emplace_back(s.substr(0, space), s.substr(space + 1));
        } else if (merge.is_array() && merge.size() == 2 && merge[0].is_string() &&
                   merge[1].is_string()) {
          merges.emplace_back(merge[0].get<std::string>(), merge[1].get<std::string>());
        } else {
          throw Error(where + ": a merge is neither \"a b\" nor [\"a\", \"b\"]");
        }
      }
    }
    BpeOptions options;
    if (m.contains("unk_token") && m["unk_token"].is_string())
      options.unk_token = m["unk_token"].get<std::string>();
    options.byte_fallback = field_bool(m, "byte_fallback", where, false);
    options.ignore_merges = field_bool(m, "ignore_merges", where, false);
    if (m.contains("dropout") && m["dropout"].is_number() && m["dropout"].get<double>() > 0)
      throw Error(where + ": BPE dropout is not supported for serving");
    return std::make_unique<BpeModel>(std::move(vocab), merges, options, where);
  }

  void read_added_tokens(const nlohmann::json& list, const std::string& where) {
    if (!list.is_array()) throw Error(where + ": must be an array");
    for (size_t i = 0; i < list.size(); ++i) {
      const auto& t = list[i];
      const std::string at = where + "[" + std::to_string(i) + "]";
      AddedToken a;
      a.content = field_string(t, "content", at);
      a.id = field_int(t, "id", at, -1);
      if (a.id < 0 || a.id >= (int64_t{1} << 24))
        throw Error(at + ": \"id\" is missing or out of range");
      if (a.content.empty()) throw Error(at + ": empty \"content\"");
      a.special = field_bool(t, "special", at, false);
      a.lstrip = field_bool(t, "lstrip", at, false);
      a.rstrip = field_bool(t, "rstrip", at, false);
      a.normalized = field_bool(t, "normalized", at, !a.special);
      const auto index = static_cast<int64_t>(added_.size());
      if (a.normalized && normalizer_)
        normalized_.add(normalizer_->apply(a.content), index);
      else
        unnormalized_.add(a.content, index);
      added_by_id_[a.id] = added_.size();
      added_strings_.insert(a.content);
      if (a.special) special_strings_.insert(a.content);
      max_added_id_ = std::max(max_added_id_, a.id);
      added_.push_back(std::move(a));
    }
  }

  void mark_special(const std::string& content) { special_strings_.insert(content); }

  void strip_around_added(std::vector<AddedTokenSplitter::Section>& sections) const {
    for (size_t i = 0; i < sections.size(); ++i) {
      if (sections[i].added < 0) continue;
      const auto& a = added_[static_cast<size_t>(sections[i].added)];
      if (a.lstrip && i > 0 && sections[i - 1].added < 0)
        sections[i - 1].text = trim_whitespace(sections[i - 1].text, false, true);
      if (a.rstrip && i + 1 < sections.size() && sections[i + 1].added < 0)
        sections[i + 1].text = trim_whitespace(sections[i + 1].text, true, false);
    }
  }

  void read_special_tokens(const nlohmann::json& j, const nlohmann::json& config) {
    SpecialTokens s;
    auto id_of = [&](const std::optional<std::string>& t) -> std::optional<int64_t> {
      if (!t) return std::nullopt;
      const auto id = token_to_id(*t);
      return id >= 0 ? std::optional<int64_t>(id) : std::nullopt;
    };
    s.bos = id_of(token_string(config, "bos_token"));
    s.eos = id_of(token_string(config, "eos_token"));
    s.unk = id_of(token_string(config, "unk_token"));
    s.pad = id_of(token_string(config, "pad_token"));
    // add_bos_token in tokenizer_config.json, else what tokenizer.json's post-processor adds.
    if (config.is_object() && config.contains("add_bos_token") &&
        config["add_bos_token"].is_boolean()) {
      s.add_bos = config["add_bos_token"].get<bool>();
    } else if (j.contains("post_processor") && j["post_processor"].is_object()) {
      const auto& pp = j["post_processor"];
      if (pp.value("type", "") == "TemplateProcessing" && pp.contains("single") &&
          pp["single"].is_array() && !pp["single"].empty() &&
          pp["single"][0].contains("SpecialToken")) {
        const auto& st = pp["single"][0]["SpecialToken"];
        if (st.contains("id") && st["id"].is_string()) {
          const auto id = token_to_id(st["id"].get<std::string>());
          if (id >= 0) {
            s.add_bos = true;
            if (!s.bos) s.bos = id;
          }
        }
      }
    }
    if (config.is_object() && config.contains("add_eos_token") &&
        config["add_eos_token"].is_boolean())
      s.add_eos = config["add_eos_token"].get<bool>();
    if (s.add_bos && !s.bos) s.add_bos = false;
    if (s.add_eos && !s.eos) s.add_eos = false;
    special_ = s;
  }

  std::string where_;
  std::unique_ptr<BpeModel> model_;
  std::unique_ptr<Normalizer> normalizer_;
  std::unique_ptr<PreTokenizer> pre_tokenizer_;
  std::unique_ptr<Decoder> decoder_;
  std::vector<AddedToken> added_;
  std::unordered_map<int64_t, size_t> added_by_id_;
  std::unordered_set<std::string> added_strings_, special_strings_;
  AddedTokenSplitter unnormalized_, normalized_;
  int64_t max_added_id_ = -1;
  bool cleanup_ = false;
};

}  // namespace

std::shared_ptr<TextTokenizer> make_hf_tokenizer(const nlohmann::json& tokenizer,
                                                 const nlohmann::json& config,
                                                 const std::string& where) {
  return std::make_shared<HfTokenizer>(tokenizer, config, where);
}

nlohmann::json gpt2_tokenizer_json(const std::string& encoder_json_path,
                                   const std::string& merges_path) {
  const nlohmann::json vocab = files::read_json(encoder_json_path);
  if (!vocab.is_object()) throw Error(encoder_json_path + ": expected an object {token: id}");
  const std::string text = files::read_all(merges_path);
  nlohmann::json merges = nlohmann::json::array();
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string::npos) end = text.size();
    std::string line = text.substr(pos, end - pos);
    if (!line.empty() && line.back() == '\r') line.pop_back();
    pos = end + 1;
    if (line.empty() || line.rfind("#version", 0) == 0) continue;
    merges.push_back(line);
  }
  nlohmann::json added = nlohmann::json::array();
  if (vocab.contains("<|endoftext|>") && vocab["<|endoftext|>"].is_number_integer())
    added.push_back({{"id", vocab["<|endoftext|>"]},
                     {"content", "<|endoftext|>"},
                     {"special", true},
                     {"normalized", false}});
  return {
      {"added_tokens", added},
      {"normalizer", nullptr},
      {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}}},
      {"decoder", {{"type", "ByteLevel"}}},
      {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", merges}}}};
}

}  // namespace osd::text
