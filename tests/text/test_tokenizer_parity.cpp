// Parity with the reference tokenizers on real tokenizer files (Llama-3, Qwen3, Llama-2 and
// GPT-2): identical ids on 2,210 varied lines each, and the reference's decode of those ids.
#include <catch2/catch.hpp>

#include "models/text/hf_tokenizer.hpp"
#include "models/text/text_tokenizer.hpp"
#include "tests/text/text_fixtures.hpp"

namespace osd::test {

namespace {

size_t count_mismatches(const TextTokenizer& tok, const std::vector<Golden>& goldens) {
  size_t n = 0;
  for (const auto& g : goldens) n += tok.encode(g.text) != g.ids;
  return n;
}

void check_parity(const std::string& name, const std::string& spec = "") {
  const auto folder = spec.empty() ? tokenizer_folder(name) : spec;
  INFO("tokenizer files: " << folder << " (run scripts/fetch-tokenizer-refs.sh)");
  REQUIRE(files::exists(folder));
  const auto tok = load_text_tokenizer(folder);
  const auto goldens = read_goldens(name);
  REQUIRE(goldens.size() >= 2000);
  size_t id_mismatches = 0, decode_mismatches = 0, round_trips = 0;
  for (size_t i = 0; i < goldens.size(); ++i) {
    const auto& g = goldens[i];
    const auto ids = tok->encode(g.text);
    if (ids != g.ids) {
      if (++id_mismatches <= 5) {
        UNSCOPED_INFO(name << " line " << i << " " << nlohmann::json(g.text).dump() << "\n  osd "
                           << nlohmann::json(ids).dump() << "\n  ref "
                           << nlohmann::json(g.ids).dump());
      }
      continue;
    }
    const auto text = tok->decode(ids);
    if (text != g.decoded && ++decode_mismatches <= 5)
      UNSCOPED_INFO(name << " line " << i << " decode " << nlohmann::json(text).dump() << " ref "
                         << nlohmann::json(g.decoded).dump());
    round_trips += text == g.text;
  }
  CHECK(id_mismatches == 0);
  CHECK(decode_mismatches == 0);
  INFO(name << ": " << round_trips << " of " << goldens.size() << " lines round-trip");
  CHECK(round_trips > goldens.size() / 2);
}

}  // namespace

TEST_CASE("tokenizer parity: Llama-3 tokenizer.json (byte-level BPE, regex split, ignore_merges)",
          "[tokenizer][parity]") {
  check_parity("llama3");
}
TEST_CASE("tokenizer parity: Qwen3 tokenizer.json (NFC, byte-level BPE)", "[tokenizer][parity]") {
  check_parity("qwen3");
}
TEST_CASE("tokenizer parity: Llama-2 tokenizer.json (metaspace BPE, byte fallback)",
          "[tokenizer][parity]") {
  check_parity("llama2");
}
TEST_CASE("tokenizer parity: GPT-2 encoder.json + vocab.bpe", "[tokenizer][parity]") {
  check_parity("gpt2");
}
TEST_CASE("tokenizer parity: SentencePiece BPE .model against libsentencepiece",
          "[tokenizer][parity]") {
  check_parity("spm", source_dir() + "/tests/data/tokenizers/sentencepiece-bpe.model");
}

TEST_CASE("tokenizer parity: the goldens reject a subtly wrong tokenizer (control)",
          "[tokenizer][parity]") {
  // Llama-3 with ignore_merges off, and with the merge list's last half dropped: each differs
  // from the reference on some lines, so the parity tests above can fail.
  const auto path = tokenizer_folder("llama3") + "/tokenizer.json";
  REQUIRE(files::exists(path));
  auto j = nlohmann::json::parse(files::read_all(path));
  const auto goldens = read_goldens("llama3");
  auto no_ignore = j;
  no_ignore["model"]["ignore_merges"] = false;
  CHECK(count_mismatches(*text::make_hf_tokenizer(no_ignore, nullptr, "control"), goldens) > 0);
  auto fewer = j;
  auto& merges = fewer["model"]["merges"];
  merges.erase(merges.begin() + static_cast<std::ptrdiff_t>(merges.size() / 2), merges.end());
  CHECK(count_mismatches(*text::make_hf_tokenizer(fewer, nullptr, "control"), goldens) > 100);
}

}  // namespace osd::test
