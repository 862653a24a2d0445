// Bad tokenizer input: every case is a clear osd::Error naming the file and the key, never a crash.
#include <catch2/catch.hpp>

#include <unistd.h>
#include <fstream>

#include "models/common/error.hpp"
#include "models/text/hf_tokenizer.hpp"
#include "models/text/text_tokenizer.hpp"
#include "tests/text/text_fixtures.hpp"

namespace osd::test {

namespace {

using Catch::Matchers::Contains;

std::string write_temp(const std::string& name, const std::string& content) {
  const auto dir = files::temp_dir() + "/osd-tok-" + std::to_string(::getpid());
  files::make_dirs(dir);
  const auto path = dir + "/" + name;
  std::ofstream(path, std::ios::binary) << content;
  return path;
}

// A small valid byte-level tokenizer.json: a, b, c, ab, abc; merges a+b, ab+c.
nlohmann::json tiny() {
  return nlohmann::json::parse(R"({
    "added_tokens": [{"id": 5, "content": "<eos>", "special": true}],
    "normalizer": null,
    "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "use_regex": true},
    "decoder": {"type": "ByteLevel"},
    "model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "c": 2, "ab": 3, "abc": 4}, "merges": ["a b", "ab c"]}})");
}

}  // namespace

TEST_CASE("tokenizer errors: a small tokenizer.json works, then each corruption is named",
          "[tokenizer][errors]") {
  const auto ok = text::make_hf_tokenizer(tiny(), nullptr, "tiny.json");
  CHECK(ok->encode("abcab<eos>") == std::vector<int64_t>{4, 3, 5});
  CHECK(ok->decode({4, 3, 5}) == "abcab<eos>");
  CHECK(ok->decode({4, 3, 5}, true) == "abcab");
  CHECK_THROWS_WITH(ok->decode({4, 99}), Contains("tiny.json") && Contains("token id 99"));
  CHECK_THROWS_WITH(ok->decode({-1}), Contains("token id -1"));

  auto bad = tiny();
  bad["model"]["type"] = "WordPiece";
  CHECK_THROWS_WITH(text::make_hf_tokenizer(bad, nullptr, "t.json"),
                    Contains("t.json") && Contains("WordPiece"));
  bad = tiny();
  bad["model"]["merges"].push_back("a zz");
  CHECK_THROWS_WITH(text::make_hf_tokenizer(bad, nullptr, "t.json"),
                    Contains("merge 2") && Contains("a zz"));
  bad = tiny();
  bad["model"]["merges"].push_back(42);
  CHECK_THROWS_WITH(text::make_hf_tokenizer(bad, nullptr, "t.json"), Contains("merge"));
  bad = tiny();
  bad["model"]["vocab"]["d"] = "seven";
  CHECK_THROWS_WITH(text::make_hf_tokenizer(bad, nullptr, "t.json"),
                    Contains("'d'") && Contains("not an integer"));
  bad = tiny();
  bad["normalizer"] = {{"type", "Precompiled"}};
  CHECK_THROWS_WITH(text::make_hf_tokenizer(bad, nullptr, "t.json"),
                    Contains("normalizer") && Contains("Precompiled"));
  bad = tiny();
  bad["pre_tokenizer"] = {
      {"type", "Split"}, {"pattern", {{"Regex", "(unclosed"}}}, {"behavior", "Isolated"}};
  CHECK_THROWS_WITH(text::make_hf_tokenizer(bad, nullptr, "t.json"),
                    Contains("pre_tokenizer") && Contains("(unclosed"));
  bad = tiny();
  bad["pre_tokenizer"] = {
      {"type", "Split"}, {"pattern", {{"Regex", "a"}}}, {"behavior", "Sideways"}};
  CHECK_THROWS_WITH(text::make_hf_tokenizer(bad, nullptr, "t.json"), Contains("Sideways"));
  bad = tiny();
  bad["decoder"] = {{"type", "CTC"}};
  CHECK_THROWS_WITH(text::make_hf_tokenizer(bad, nullptr, "t.json"),
                    Contains("decoder") && Contains("CTC"));
  bad = tiny();
  bad["added_tokens"][0].erase("id");
  CHECK_THROWS_WITH(text::make_hf_tokenizer(bad, nullptr, "t.json"),
                    Contains("added_tokens[0]") && Contains("id"));
  bad = tiny();
  bad["model"]["vocab"]["z"] = 2000000000;  // found by the fuzzer: allocated 2e9 strings
  CHECK_THROWS_WITH(text::make_hf_tokenizer(bad, nullptr, "t.json"), Contains("'z'") && Contains("out of range"));
  CHECK_THROWS_WITH(load_text_tokenizer(source_dir() + "/tests/data/fuzz-regressions/tokenizer-json-huge-id.json"),
                    Contains("out of range"));
  bad = tiny();
  bad["model"]["unk_token"] = "<nope>";
  CHECK_THROWS_WITH(text::make_hf_tokenizer(bad, nullptr, "t.json"),
                    Contains("unk_token") && Contains("<nope>"));
  bad = tiny();
  bad.erase("model");
  CHECK_THROWS_WITH(text::make_hf_tokenizer(bad, nullptr, "t.json"), Contains("missing \"model\""));
}

TEST_CASE("tokenizer errors: files, folders and .model bytes", "[tokenizer][errors]") {
  CHECK_THROWS_WITH(load_text_tokenizer("/nonexistent/tokenizer.json"),
                    Contains("/nonexistent/tokenizer.json") && Contains("no such"));
  const auto invalid = write_temp("invalid.json", "{\"model\": [1, 2,");
  CHECK_THROWS_WITH(load_text_tokenizer(invalid), Contains(invalid) && Contains("invalid JSON"));
  const auto empty_dir = files::temp_dir() + "/osd-tok-empty-" + std::to_string(::getpid());
  files::make_dirs(empty_dir);
  CHECK_THROWS_WITH(load_text_tokenizer(empty_dir),
                    Contains(empty_dir) && Contains("no tokenizer.json"));

  const auto model =
      files::read_all(source_dir() + "/tests/data/tokenizers/sentencepiece-bpe.model");
  const auto truncated = write_temp("truncated.model", model.substr(0, model.size() / 2));
  CHECK_THROWS_WITH(load_text_tokenizer(truncated),
                    Contains(truncated) && Contains("not a SentencePiece model"));
  const auto garbage = write_temp("garbage.model", std::string(64, '\xFF'));
  CHECK_THROWS_WITH(load_text_tokenizer(garbage),
                    Contains(garbage) && Contains("not a SentencePiece model"));
  // Found by the fuzzer (scripts/fuzz.sh): a BYTE piece that is not <0xXX> crashed decode.
  const auto bad_byte =
      source_dir() + "/tests/data/fuzz-regressions/sentencepiece-bad-byte-piece.model";
  CHECK_THROWS_WITH(load_text_tokenizer(bad_byte),
                    Contains("byte piece") && Contains("not <0xXX>"));
  // Also found by the fuzzer: an empty user-defined piece made encode loop until out of memory.
  const auto empty_piece =
      source_dir() + "/tests/data/fuzz-regressions/sentencepiece-empty-user-piece.model";
  CHECK_THROWS_WITH(load_text_tokenizer(empty_piece), Contains("is empty"));
  const auto empty = write_temp("empty.model", "");
  CHECK_THROWS_WITH(load_text_tokenizer(empty), Contains("no pieces"));

  // generation_config.json naming an id outside the vocabulary.
  const auto dir = files::temp_dir() + "/osd-tok-gen-" + std::to_string(::getpid());
  files::make_dirs(dir);
  std::ofstream(dir + "/tokenizer.json") << tiny().dump();
  std::ofstream(dir + "/generation_config.json") << R"({"eos_token_id": 77})";
  CHECK_THROWS_WITH(load_text_tokenizer(dir),
                    Contains("generation_config.json") && Contains("eos_token_id"));
  std::ofstream(dir + "/generation_config.json")
      << R"({"bos_token_id": 4, "eos_token_id": [5, 3]})";
  const auto tok = load_text_tokenizer(dir);
  CHECK(tok->special_tokens().bos == 4);
  CHECK(tok->special_tokens().eos == 5);
}

TEST_CASE("tokenizer: invalid UTF-8 input is read as WHATWG does, never a crash",
          "[tokenizer][errors]") {
  const auto folder = tokenizer_folder("llama3");
  REQUIRE(files::exists(folder));
  const auto tok = load_text_tokenizer(folder);
  const std::string bad = "ok \xC3( \xE2\x82 end \xFF";
  const auto ids = tok->encode(bad);
  CHECK(tok->decode(ids) == "ok \xEF\xBF\xBD( \xEF\xBF\xBD end \xEF\xBF\xBD");
  CHECK(load_text_tokenizer("bytes")->encode(bad).size() == bad.size());  // bytes keep every byte
}

TEST_CASE("tokenizer: bos and eos from tokenizer_config.json, encode_prompt adds bos", "[tokenizer]") {
  const auto llama2 = load_text_tokenizer(tokenizer_folder("llama2"));
  CHECK(llama2->special_tokens().bos == 1);
  CHECK(llama2->special_tokens().eos == 2);
  CHECK(llama2->special_tokens().add_bos);
  CHECK(llama2->encode_prompt("Hello").front() == 1);
  const auto qwen = load_text_tokenizer(tokenizer_folder("qwen3"));
  CHECK_FALSE(qwen->special_tokens().add_bos);
  CHECK(qwen->special_tokens().eos == qwen->token_to_id("<|im_end|>"));
  CHECK(qwen->is_special(*qwen->special_tokens().eos));
  const auto llama3 = load_text_tokenizer(tokenizer_folder("llama3"));
  CHECK(llama3->special_tokens().bos == 128000);
  CHECK(llama3->special_tokens().eos == 128001);
}

}  // namespace osd::test
