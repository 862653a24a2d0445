#include "models/text/text_tokenizer.hpp"

#include <nlohmann/json.hpp>

#include <fstream>

#include "models/common/error.hpp"
#include "models/common/files.hpp"
#include "models/text/hf_tokenizer.hpp"
#include "models/text/sentencepiece_model.hpp"

namespace osd {

namespace {

class ByteTokenizer final : public TextTokenizer {
 public:
  std::vector<int64_t> encode(std::string_view text) const override {
    std::vector<int64_t> ids;
    ids.reserve(text.size());
    for (unsigned char c : text) ids.push_back(c);
    return ids;
  }
  std::string decode(const std::vector<int64_t>& ids, bool) const override {
    std::string s;
    s.reserve(ids.size());
    for (auto t : ids) {
      if (t < 0 || t >= 256)
        throw Error("bytes tokenizer: token id " + std::to_string(t) + " is not a byte (0..255)");
      s += static_cast<char>(t);
    }
    return s;
  }
  int64_t vocab_size() const override { return 256; }
  std::string name() const override { return "bytes"; }
};

nlohmann::json optional_json(const std::string& path) {
  return files::exists(path) ? files::read_json(path) : nlohmann::json();
}

// generation_config.json's bos/eos ids win over tokenizer_config.json's strings, as transformers'
// generate() does; eos may be a list there (the first is kept).
void apply_generation_config(TextTokenizer& tok, const std::string& dir) {
  const auto path = dir + "/generation_config.json";
  if (!files::exists(path)) return;
  const auto g = files::read_json(path);
  if (!g.is_object()) throw Error(path + ": not a JSON object");
  auto s = tok.special_tokens();
  auto id = [&](const char* key) -> std::optional<int64_t> {
    if (!g.contains(key) || g[key].is_null()) return std::nullopt;
    const auto& v = g[key].is_array() && !g[key].empty() ? g[key][0] : g[key];
    if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() >= tok.vocab_size())
      throw Error(path + ": \"" + key + "\" is not a token id of this tokenizer (vocabulary " +
                  std::to_string(tok.vocab_size()) + ")");
    return v.get<int64_t>();
  };
  if (auto b = id("bos_token_id")) s.bos = b;
  if (auto e = id("eos_token_id")) s.eos = e;
  if (auto p = id("pad_token_id")) s.pad = p;
  tok.set_special_tokens(s);
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::shared_ptr<TextTokenizer> load_file(const std::string& path, const nlohmann::json& config) {
  if (ends_with(path, ".model"))
    return text::make_sentencepiece_tokenizer(files::read_all(path), path);
  return text::make_hf_tokenizer(files::read_json(path), config, path);
}

}  // namespace

std::vector<int64_t> TextTokenizer::encode_prompt(std::string_view text) const {
  auto ids = encode(text);
  if (special_.add_bos && special_.bos && (ids.empty() || ids.front() != *special_.bos))
    ids.insert(ids.begin(), *special_.bos);
  if (special_.add_eos && special_.eos) ids.push_back(*special_.eos);
  return ids;
}

std::shared_ptr<const TextTokenizer> load_text_tokenizer(const std::string& spec) {
  if (spec == "bytes") return std::make_shared<ByteTokenizer>();
  if (!files::exists(spec))
    throw Error(
        spec +
        ": no such tokenizer (\"bytes\", a tokenizer.json, a .model file, or a checkpoint folder)");
  if (!files::is_dir(spec)) return load_file(spec, nlohmann::json());
  const std::string dir = spec;
  const auto config = optional_json(dir + "/tokenizer_config.json");
  std::shared_ptr<TextTokenizer> tok;
  if (files::exists(dir + "/tokenizer.json")) {
    tok = load_file(dir + "/tokenizer.json", config);
  } else if (files::exists(dir + "/tokenizer.model")) {
    tok = load_file(dir + "/tokenizer.model", config);
  } else if (files::exists(dir + "/encoder.json") && files::exists(dir + "/vocab.bpe")) {
    tok = text::make_hf_tokenizer(
        text::gpt2_tokenizer_json(dir + "/encoder.json", dir + "/vocab.bpe"), config,
        dir + "/encoder.json");
  } else if (files::exists(dir + "/vocab.json") && files::exists(dir + "/merges.txt")) {
    tok =
        text::make_hf_tokenizer(text::gpt2_tokenizer_json(dir + "/vocab.json", dir + "/merges.txt"),
                                config, dir + "/vocab.json");
  } else {
    throw Error(dir +
                ": no tokenizer.json, tokenizer.model, encoder.json + vocab.bpe, or vocab.json + "
                "merges.txt in this folder");
  }
  apply_generation_config(*tok, dir);
  return tok;
}

void save_tokenizer_files(const std::string& spec, const std::string& dir) {
  if (spec == "bytes") return;
  files::make_dirs(dir);
  auto copy = [&](const std::string& from, const std::string& name) {
    const auto bytes = files::read_all(from);
    const auto to = dir + "/" + name;
    std::ofstream out(to + ".tmp", std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    out.close();
    if (!out) throw Error(to + ": cannot write");
    files::rename(to + ".tmp", to);
  };
  if (!files::is_dir(spec)) {
    copy(spec, ends_with(spec, ".model") ? "tokenizer.model" : "tokenizer.json");
    return;
  }
  for (const char* name :
       {"tokenizer.json", "tokenizer_config.json", "tokenizer.model", "special_tokens_map.json",
        "encoder.json", "vocab.bpe", "vocab.json", "merges.txt"})
    if (files::exists(spec + "/" + name)) copy(spec + "/" + name, name);
}

}  // namespace osd
