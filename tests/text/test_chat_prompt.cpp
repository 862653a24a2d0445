// Chat prompts: a checkpoint's own template (the real Llama-3 and Qwen3 tokenizer_config.json)
// renders as @huggingface/jinja does and is tokenised without a second bos; a checkpoint without
// one (Llama-2's files, bytes) gets the plain template; a template osd cannot parse leaves chat
// off with a message that says how to configure one; a template's own refusal is its message.
#include <catch2/catch.hpp>

#include <algorithm>
#include <fstream>

#include "models/common/error.hpp"
#include "models/text/chat_prompt.hpp"
#include "tests/text/text_fixtures.hpp"

namespace osd::test {

namespace {

using ojson = nlohmann::ordered_json;

// The @huggingface/jinja rendering of `name`'s template for conversation `case_name`.
ojson golden(const std::string& name, const std::string& case_name) {
  const auto all = ojson::parse(files::read_all(source_dir() + "/tests/data/chat_templates/goldens.json"));
  for (const auto& g : all)
    if (g["template_name"] == name && g["case"] == case_name) return g;
  FAIL("no golden " << name << "/" << case_name);
  return {};
}

std::string rendered(const ChatPrompt& p, const ojson& messages) {
  auto r = p.render(messages);
  if (auto* e = std::get_if<ChatTemplateError>(&r)) FAIL(e->message);
  return std::get<std::string>(r);
}

}  // namespace

TEST_CASE("chat prompt: Llama-3's own template, one bos", "[chat]") {
  const auto dir = tokenizer_folder("llama3");
  const auto tok = load_text_tokenizer(dir);
  const auto p = ChatPrompt::load("auto", dir, tok);
  REQUIRE(p.available());
  CHECK(p.source() == "checkpoint");
  const auto g = golden("llama3", "system_user");
  const std::string text = rendered(p, g["context"]["messages"]);
  CHECK(text == g["expected"].get<std::string>());
  auto tokens = std::get<std::vector<int64_t>>(p.tokens(g["context"]["messages"]));
  const int64_t bos = *tok->special_tokens().bos;
  CHECK(tokens.front() == bos);
  CHECK(std::count(tokens.begin(), tokens.end(), bos) == 1);  // the template's, not a second one
  CHECK(tokens == tok->encode(text));
}

TEST_CASE("chat prompt: a template's text gets no special tokens added", "[chat]") {
  // As transformers does: a template that writes no bos gives none, although Llama-2's tokenizer
  // adds bos to a completion prompt.
  const auto dir = tokenizer_folder("llama2");
  const auto tok = load_text_tokenizer(dir);
  const auto path = files::temp_dir() + "/osd-test-no-bos-template.jinja";
  {
    std::ofstream(path) << "{{ messages[0]['content'] }}";
  }
  const auto bare = ChatPrompt::load(path, dir, tok);
  REQUIRE(bare.available());
  CHECK(bare.source() == path);
  const ojson hi = ojson::array({{{"role", "user"}, {"content", "Hi"}}});
  const auto tokens = std::get<std::vector<int64_t>>(bare.tokens(hi));
  CHECK(tokens == tok->encode("Hi"));
  CHECK(tokens.front() != *tok->special_tokens().bos);
  CHECK(tok->encode_prompt("Hi").front() == *tok->special_tokens().bos);
}

TEST_CASE("chat prompt: Qwen3's own template renders as the reference", "[chat]") {
  const auto dir = tokenizer_folder("qwen3");
  const auto p = ChatPrompt::load("auto", dir, load_text_tokenizer(dir));
  REQUIRE(p.available());
  for (const char* c : {"system_user", "multi_turn"}) {
    const auto g = golden("qwen3", c);
    if (g.contains("expected")) CHECK(rendered(p, g["context"]["messages"]) == g["expected"].get<std::string>());
  }
}

TEST_CASE("chat prompt: no template in the checkpoint gives the plain one", "[chat]") {
  const auto dir = tokenizer_folder("llama2");
  const auto tok = load_text_tokenizer(dir);
  const auto p = ChatPrompt::load("auto", dir, tok);
  REQUIRE(p.available());
  CHECK(p.source() == "plain");
  const ojson messages = {{{"role", "system"}, {"content", "Be brief."}}, {{"role", "user"}, {"content", "Hi"}}};
  CHECK(rendered(p, messages) == "system: Be brief.\nuser: Hi\nassistant:");
  // Tokenised as a prompt: Llama-2 adds its bos.
  CHECK(std::get<std::vector<int64_t>>(p.tokens(messages)) == tok->encode_prompt("system: Be brief.\nuser: Hi\nassistant:"));
  const auto bytes = ChatPrompt::load("auto", "", load_text_tokenizer("bytes"));
  CHECK(bytes.source() == "plain");
  CHECK(std::get<std::vector<int64_t>>(bytes.tokens(ojson::array({{{"role", "user"}, {"content", "ok"}}}))).size() ==
        std::string("user: ok\nassistant:").size());
}

TEST_CASE("chat prompt: none, a file, and templates osd cannot use", "[chat][errors]") {
  const auto tok = load_text_tokenizer("bytes");
  const auto off = ChatPrompt::load("none", "", tok);
  CHECK_FALSE(off.available());
  CHECK_THAT(off.unavailable_reason(), Catch::Contains("osd.chat-template"));
  CHECK_THROWS_AS(ChatPrompt::load("/nonexistent/template.jinja", "", tok), Error);
  // A template file that does not parse: chat off, the reason names the problem and the fix.
  const auto broken_path = files::temp_dir() + "/osd-test-broken-template.jinja";
  {
    std::ofstream(broken_path) << "{% for m in messages %}{{ m.content }";
  }
  const auto broken = ChatPrompt::load(broken_path, "", tok);
  CHECK_FALSE(broken.available());
  CHECK_THAT(broken.unavailable_reason(), Catch::Contains("cannot render") && Catch::Contains("osd.chat-template"));
  // A template that refuses a conversation says why, in its own words.
  const auto strict_path = files::temp_dir() + "/osd-test-strict-template.jinja";
  {
    std::ofstream(strict_path)
        << "{% if messages[0]['role'] != 'user' %}{{ raise_exception('first message must be the user') }}{% endif %}"
           "{{ messages[0]['content'] }}";
  }
  const auto strict = ChatPrompt::load(strict_path, "", tok);
  REQUIRE(strict.available());
  auto refused = strict.tokens(ojson::array({{{"role", "assistant"}, {"content", "x"}}}));
  REQUIRE(std::holds_alternative<ChatTemplateError>(refused));
  CHECK(std::get<ChatTemplateError>(refused).kind == ChatTemplateError::Kind::kRaised);
  CHECK(std::get<ChatTemplateError>(refused).message == "first message must be the user");
  CHECK(rendered(strict, ojson::array({{{"role", "user"}, {"content", "x"}}})) == "x");
}

}  // namespace osd::test
