// Streamed text on its way into server-sent events: with the real Llama-2 tokenizer
// (SentencePiece pieces with a leading-space marker, byte fallback for emoji), every SSE chunk is
// whole UTF-8 with no U+FFFD, the first chunk keeps its leading space, and the chunks add up to
// exactly what decoding adds to the prompt's text; a stop string spanning tokens is never sent.
#include <catch2/catch.hpp>

#include "models/text/stream_decoder.hpp"
#include "models/text/utf8.hpp"
#include "runtime/openai_api.hpp"
#include "tests/text/text_fixtures.hpp"

namespace osd::test {

namespace {

using json = nlohmann::json;

// The runtime's per-token text (a StreamDecoder with the prompt as context), through StreamText,
// into SSE events; returns the text read back from the events.
std::string through_sse(const std::shared_ptr<const TextTokenizer>& tok, const std::vector<int64_t>& prompt,
                        const std::vector<int64_t>& generated, const std::vector<std::string>& stop,
                        const std::string& final_text, size_t* bad_chunks, std::string* first_chunk) {
  StreamDecoder decoder(tok, prompt);
  openai::StreamText text(stop);
  openai::Reply reply{openai::Endpoint::completions, "cmpl-1", 0, "m"};
  std::string read_back;
  auto emit = [&](const std::string& piece) {
    if (piece.empty()) return;
    const std::string event = openai::sse_event(openai::text_chunk(reply, piece, "", false));
    REQUIRE(event.rfind("data: ", 0) == 0);
    const auto chunk = json::parse(event.substr(6))["choices"][0]["text"].get<std::string>();
    if (!text::is_valid_utf8(chunk) || chunk.find("\xEF\xBF\xBD") != std::string::npos) ++*bad_chunks;
    if (read_back.empty() && first_chunk) *first_chunk = chunk;
    read_back += chunk;
  };
  for (auto id : generated) emit(text.push(decoder.push(id)));
  emit(text.finish(final_text));
  return read_back;
}

}  // namespace

TEST_CASE("sse text: Llama-2 streams whole characters and keeps its leading space",
          "[http][stream][tokenizer]") {
  const auto dir = tokenizer_folder("llama2");
  REQUIRE(files::exists(dir));
  const auto tok = load_text_tokenizer(dir);
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"Say hi:", " Hello \xF0\x9F\x98\x80 world \xF0\x9F\x91\x8D\xF0\x9F\x8F\xBD!"},  // emoji: pieces and bytes
      {"Chinese:", " \xE4\xBD\xA0\xE5\xA5\xBD\xEF\xBC\x8C\xE4\xB8\x96\xE7\x95\x8C"},  // 你好，世界
      {"Caf", "\xC3\xA9 na\xC3\xAF" "ve r\xC3\xA9sum\xC3\xA9 \xE2\x82\xAC" "5"},       // é ï € after a word
      {"Math", ": \xE2\x88\x80x \xE2\x88\x88 \xE2\x84\x9D, \xF0\x9D\x95\x8F"},         // ∀x ∈ ℝ, 𝕏 (byte fallback)
  };
  for (const auto& [prompt_text, continuation] : cases) {
    const auto prompt = tok->encode_prompt(prompt_text);
    const auto all = tok->encode_prompt(prompt_text + continuation);
    REQUIRE(all.size() > prompt.size());
    REQUIRE(std::equal(prompt.begin(), prompt.end(), all.begin()));
    const std::vector<int64_t> generated(all.begin() + static_cast<std::ptrdiff_t>(prompt.size()), all.end());
    const std::string before = tok->decode(prompt, true), whole = tok->decode(all, true);
    REQUIRE(whole.compare(0, before.size(), before) == 0);
    const std::string expected = whole.substr(before.size());
    // What the runtime's final text is: the decoder's pieces (none held back at the end here).
    StreamDecoder d(tok, prompt);
    const std::string final_text = d.push(generated) + d.finish();
    size_t bad = 0;
    std::string first;
    INFO(json(prompt_text + continuation).dump());
    CHECK(through_sse(tok, prompt, generated, {}, final_text, &bad, &first) == expected);
    CHECK(bad == 0);
    if (continuation[0] == ' ') CHECK(first[0] == ' ');  // the piece's leading-space marker survives
  }
  // Control: 𝕏 is four byte-fallback tokens; decoded one by one, none is a whole character.
  const auto emoji = tok->encode("\xF0\x9D\x95\x8F");
  CHECK(emoji.size() >= 4);
  size_t invalid = 0;
  for (auto id : emoji) {
    const auto piece = tok->decode({id}, true);
    invalid += !text::is_valid_utf8(piece) || piece.find("\xEF\xBF\xBD") != std::string::npos;
  }
  CHECK(invalid > 0);
}

TEST_CASE("sse text: a stop string that spans tokens is never sent", "[http][stream][tokenizer]") {
  const auto tok = load_text_tokenizer(tokenizer_folder("llama2"));
  const auto prompt = tok->encode_prompt("List:");
  const auto all = tok->encode_prompt("List: one\n\ntwo");
  REQUIRE(std::equal(prompt.begin(), prompt.end(), all.begin()));
  const std::vector<int64_t> generated(all.begin() + static_cast<std::ptrdiff_t>(prompt.size()), all.end());
  // The runtime cut the final text before "\n\n" and streamed pieces up to that point; emulate it
  // with the decoder's pieces, truncated where the stop string starts.
  StreamDecoder d(tok, prompt);
  std::string so_far;
  std::vector<int64_t> kept;
  for (auto id : generated) {
    so_far += d.push(id);
    kept.push_back(id);
    if (so_far.find("\n\n") != std::string::npos) break;
  }
  const std::string final_text = so_far.substr(0, so_far.find("\n\n"));
  size_t bad = 0;
  const auto sent = through_sse(tok, prompt, kept, {"\n\n"}, final_text, &bad, nullptr);
  CHECK(sent == final_text);
  CHECK(sent == " one");
  CHECK(bad == 0);
}

TEST_CASE("sse text: raw per-token bytes are held until their character is whole", "[http][stream]") {
  // A runtime without a tokenizer's stream decoder sends each byte token's text as is.
  openai::StreamText t;
  const std::string s = "\xF0\x9F\x98\x80!";
  std::vector<std::string> out;
  for (char c : s) out.push_back(t.push(std::string(1, c)));
  CHECK(out == std::vector<std::string>{"", "", "", "\xF0\x9F\x98\x80", "!"});
}

}  // namespace osd::test
