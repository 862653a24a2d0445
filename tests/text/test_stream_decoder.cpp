// Streaming detokenization: per-token text never splits a UTF-8 character, and the streamed
// text after a prompt is exactly what decoding everything adds to the prompt's text.
#include <catch2/catch.hpp>

#include "models/text/stream_decoder.hpp"
#include "models/text/utf8.hpp"
#include "tests/text/text_fixtures.hpp"

namespace osd::test {

namespace {

void check_streaming(const std::string& name, const std::string& spec) {
  REQUIRE(files::exists(spec));
  const auto tok = load_text_tokenizer(spec);
  const auto goldens = read_goldens(name);
  size_t checked = 0, split_chars = 0;
  for (size_t i = 0; i < goldens.size(); ++i) {
    const auto& ids = goldens[i].ids;
    if (ids.size() < 2) continue;
    const size_t cut = 1 + (i * 7919) % (ids.size() - 1);  // a prompt of `cut` tokens
    const std::vector<int64_t> prompt(ids.begin(), ids.begin() + static_cast<std::ptrdiff_t>(cut));
    const std::string before = tok->decode(prompt, true), all = tok->decode(ids, true);
    if (all.compare(0, before.size(), before) != 0)
      continue;  // decoding rewrote the prompt's text (clean-up rules)
    StreamDecoder stream(tok, prompt);
    std::string streamed;
    for (size_t k = cut; k < ids.size(); ++k) {
      const auto piece = stream.push(ids[k]);
      if (!text::is_valid_utf8(piece) || text::incomplete_tail(piece) != 0) ++split_chars;
      streamed += piece;
    }
    streamed += stream.finish();
    INFO(name << " line " << i << " cut " << cut << " " << nlohmann::json(goldens[i].text).dump());
    REQUIRE(streamed == all.substr(before.size()));
    ++checked;
  }
  CHECK(split_chars == 0);
  CHECK(checked > goldens.size() / 2);
}

}  // namespace

TEST_CASE("stream decoder: byte-level BPE (Llama-3) holds back partial characters",
          "[tokenizer][stream]") {
  check_streaming("llama3", tokenizer_folder("llama3"));
}
TEST_CASE("stream decoder: metaspace + byte fallback (Llama-2) keeps leading spaces",
          "[tokenizer][stream]") {
  check_streaming("llama2", tokenizer_folder("llama2"));
}
TEST_CASE("stream decoder: SentencePiece .model", "[tokenizer][stream]") {
  check_streaming("spm", source_dir() + "/tests/data/tokenizers/sentencepiece-bpe.model");
}

TEST_CASE("stream decoder: an emoji split over byte tokens appears once, whole",
          "[tokenizer][stream]") {
  const auto tok = load_text_tokenizer("bytes");
  StreamDecoder stream(tok);
  const std::string emoji = "\xF0\x9F\x98\x80";
  std::vector<std::string> pieces;
  for (unsigned char c : "a" + emoji + "b") pieces.push_back(stream.push(c));
  CHECK(pieces == std::vector<std::string>{"a", "", "", "", emoji, "b"});
  // Control: decoding each token alone splits the character (what streaming must avoid).
  CHECK_FALSE(text::is_valid_utf8(tok->decode({0xF0})));
}

}  // namespace osd::test
