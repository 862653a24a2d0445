// Chat templates: every golden of @huggingface/jinja byte for byte (real templates of Llama 2, 3,
// 3.1, Qwen 2, 2.5, 3, TinyLlama, Mistral, and grammar-*.jinja), then the grammar piece by piece,
// then the errors: a message naming the construct and its line, never a crash or a hang.
#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>

#include <fstream>
#include <map>
#include <sstream>
#include <thread>

#include "models/text/chat_template.hpp"

namespace osd::test {

namespace {

using Catch::Matchers::Contains;
using Json = nlohmann::ordered_json;

std::string chat_templates_dir() {
  return OSD_SOURCE_DIR "/tests/data/chat_templates";
}

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  REQUIRE(in.good());
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

ChatTemplate parse_ok(const std::string& source) {
  auto parsed = ChatTemplate::parse(source);
  if (const auto* error = std::get_if<ChatTemplateError>(&parsed))
    FAIL("parse error: " << error->message);
  return std::get<ChatTemplate>(std::move(parsed));
}

// The rendered text; a test fails on an error.
std::string render(const std::string& source, const Json& context = Json::object(),
                   const ChatTemplateOptions& options = {}) {
  auto rendered = parse_ok(source).render(context, options);
  if (const auto* error = std::get_if<ChatTemplateError>(&rendered))
    FAIL("render error: " << error->message);
  return std::get<std::string>(rendered);
}

// The error from parsing or rendering; a test fails when the template renders.
ChatTemplateError error_of(const std::string& source, const Json& context = Json::object(),
                           const ChatTemplateOptions& options = {}) {
  auto parsed = ChatTemplate::parse(source);
  if (auto* error = std::get_if<ChatTemplateError>(&parsed)) return *error;
  auto rendered = std::get<ChatTemplate>(parsed).render(context, options);
  if (auto* error = std::get_if<ChatTemplateError>(&rendered)) return *error;
  FAIL("rendered without an error: " << std::get<std::string>(rendered));
  return {};
}

Json chat(std::initializer_list<std::pair<const char*, const char*>> turns) {
  Json messages = Json::array();
  for (const auto& [role, content] : turns)
    messages.push_back({{"role", role}, {"content", content}});
  return {{"messages", messages},
          {"bos_token", "<s>"},
          {"eos_token", "</s>"},
          {"add_generation_prompt", true}};
}

}  // namespace

TEST_CASE("chat templates: every golden renders byte for byte as @huggingface/jinja renders it",
          "[chat_template]") {
  const auto goldens = Json::parse(read_text(chat_templates_dir() + "/goldens.json"));
  std::map<std::string, ChatTemplate> templates;
  std::map<std::string, int> passed;
  for (const auto& golden : goldens) {
    const std::string name = golden["template_name"];
    INFO(name << " / " << golden["case"].get<std::string>());
    if (!templates.count(name))
      templates.emplace(name, parse_ok(read_text(chat_templates_dir() + "/" + name + ".jinja")));
    const auto rendered = templates.at(name).render(golden["context"]);
    const auto* error = std::get_if<ChatTemplateError>(&rendered);
    if (golden.value("expected_error", false)) {
      REQUIRE(error != nullptr);  // raise_exception: the template's own message
      if (error->kind == ChatTemplateError::Kind::kRaised)
        CHECK(error->message == golden["error_message"]);
    } else if (error) {
      FAIL_CHECK("render error: " << error->message);
    } else {
      CHECK(std::get<std::string>(rendered) == golden["expected"].get<std::string>());
    }
    ++passed[name];
  }
  for (const char* name : {"llama2-chat", "llama3", "llama3_1", "llama3_1-8b-instruct",
                           "qwen2-chatml", "qwen2_5-instruct", "qwen3", "tinyllama-chat",
                           "mistral-7b-instruct-v0.1", "mixtral-8x7b-instruct-v0.1"}) {
    INFO(name);
    CHECK(passed[name] >= 8);
  }
  CHECK(goldens.size() >= 100);
}

TEST_CASE(
    "chat templates: whitespace control, trim_blocks and lstrip_blocks work as in transformers",
    "[chat_template]") {
  CHECK(render("a  {{- 'b' -}}  c") == "abc");
  CHECK(render("a  {%- if true -%}  b  {%- endif -%}  c") == "abc");
  CHECK(render("a \n {#- note -#} \n b") == "ab");
  CHECK(render("{% if true %}\nx\n{% endif %}\ny") == "x\ny");          // trim_blocks
  CHECK(render("  {% if true %}x{% endif %}\n  {{ 'y' }}") == "x  y");  // lstrip_blocks, not for {{
  CHECK(render("a  {# c #}{{- 'b' }}") == "a  b");  // {{- does not reach past a comment
  CHECK(render("line\n") == "line");                // one trailing newline goes
  CHECK(render("x{% generation %}y{%- endgeneration %} z") == "xy z");
  CHECK(render(" \t\u00a0{{- 'nbsp is whitespace' }}") == "nbsp is whitespace");
}

TEST_CASE("chat templates: loops give loop variables, else blocks, filters, break and continue",
          "[chat_template]") {
  const auto context = chat({{"system", "s"}, {"user", "u"}, {"assistant", "a"}});
  CHECK(
      render(
          "{% for m in messages %}{{ loop.index }}{{ loop.index0 }}{{ loop.first }}{{ loop.last }}"
          "{{ loop.length }}{{ m.role[0] }} {% endfor %}",
          context) == "10truefalse3s 21falsefalse3u 32falsetrue3a ");
  CHECK(render(
            "{% for m in messages if m.role != 'system' %}{{ loop.index }}{{ m.role }}{% endfor %}",
            context) == "1user2assistant");
  CHECK(render("{% for x in [] %}x{% else %}empty{% endfor %}") == "empty");
  CHECK(render("{% for i in range(9) %}{% if i == 1 %}{% continue %}{% endif %}"
               "{% if i == 3 %}{% break %}{% endif %}{{ i }}{% endfor %}") == "02");
  CHECK(render("{% for k, v in {'a': 1, 'b': 2}.items() %}{{ k }}{{ v }}{% endfor %}") == "a1b2");
  CHECK(render("{% for k in {'z': 1, 'a': 2} %}{{ k }}{% endfor %}") == "za");
  CHECK(render("{% for m in messages[::-1] %}{{ m.content }}{% endfor %}", context) == "aus");
}

TEST_CASE("chat templates: set, namespace attributes, block set and macros", "[chat_template]") {
  CHECK(render("{% set ns = namespace(n=0) %}"
               "{% for i in range(4) %}{% set ns.n = ns.n + i %}{% endfor %}{{ ns.n }}") == "6");
  CHECK(render("{% set x = 1 %}{% for i in [1] %}{% set x = 2 %}{% endfor %}{{ x }}") == "1");
  CHECK(render("{% set t %}a{{ 1 + 1 }}b{% endset %}[{{ t }}]") == "[a2b]");
  CHECK(render("{% set a, b = 'x', 'y' %}{{ b }}{{ a }}") == "yx");
  CHECK(render("{% macro m(a, b='B') %}{{ a }}{{ b }}{% endmacro %}"
               "{{ m(1) }}{{ m(2, 3) }}{{ m(b=4, a=5) }}") == "1B2354");
  CHECK(render("{% macro f(n) %}{{ n }}{% if n > 0 %}{{ f(n - 1) }}{% endif %}{% endmacro %}"
               "{{ f(3) }}") == "3210");
}

TEST_CASE("chat templates: expressions follow @huggingface/jinja's JavaScript semantics",
          "[chat_template]") {
  const auto context = chat({{"system", "s"}, {"user", "u"}, {"assistant", "a"}});
  CHECK(render("{{ messages[1:] | length }}{{ messages[-1].role }}{{ 'héllo'[1:3] }}", context) ==
        "2assistantél");
  CHECK(render("{{ 7 / 2 }} {{ 4 / 2 }} {{ 7 // 2 }} {{ -7 % 3 }} {{ 2.0 }} {{ 0.1 + 0.2 }}"
               " {{ 10 ** 21 }}") == "3.5 2.0 3 -1 2.0 0.30000000000000004 1e+21");
  CHECK(render("{{ true }} {{ none }}|{{ undefined }}|{{ undefined.x.y }}|{{ [1, 'a', none] }}") ==
        "true |||[1, \"a\", null]");
  CHECK(render(
            "{{ 'a' if x is defined else 'b' }}{{ 'c' if not x }}{{ x is not defined and 'd' }}") ==
        "bcd");
  CHECK(render("{{ '' == false }} {{ '1' == 1 }} {{ none == undefined }} {{ 'ab' in 'cabd' }}") ==
        "true true true true");
  CHECK(render("{{ '  x  '.strip() }}|{{ 'a,b'.split(',') }}|{{ 'Hi'.upper() }}"
               "|{{ 'x'.startswith('x') }}") == "x|[\"a\", \"b\"]|HI|true");
  CHECK(render("{{ d.get('k') }}{{ d.get('m', 'M') }}{{ d.keys() | list }}",
               {{"d", {{"k", "v"}}}}) == "vM[\"k\"]");
}

TEST_CASE("chat templates: filters and tojson match Python json.dumps spacing", "[chat_template]") {
  const Json context = {{"tool", {{"name", "f"}, {"args", {1, 2.5, "é"}}, {"none", nullptr}}}};
  CHECK(render("{{ tool | tojson }}", context) ==
        R"({"name": "f", "args": [1, 2.5, "é"], "none": null})");
  CHECK(render("{{ tool | tojson(indent=2) }}", context) ==
        "{\n  \"name\": \"f\",\n"
        "  \"args\": [\n    1,\n    2.5,\n    \"é\"\n  ],\n"
        "  \"none\": null\n}");
  CHECK(render("{{ tool.args | tojson(ensure_ascii=true, separators=(',', ':')) }}", context) ==
        R"([1,2.5,"\u00e9"])");
  CHECK(render("{{ {'b': 1, 'a': 2} | tojson(sort_keys=true) }}") == R"({"a": 2, "b": 1})");
  CHECK(render("{{ ' x ' | trim }}{{ 'ab' | upper }}{{ 'x y' | title }}"
               "{{ [3, 1] | sort | join('-') }}") == "xABX Y1-3");
  CHECK(render("{{ [1, 2] | first }}{{ [1, 2] | last }}{{ 'abc' | length }}"
               "{{ '7' | int + 1 }}{{ 2 | string }}") == "12382");
  CHECK(render(
            "{{ x | default('d') }}{{ {'a': 1} | items | list }}{{ 'a-b' | replace('-', '+') }}") ==
        "d[[\"a\", 1]]a+b");
  CHECK(render("{{ ms | selectattr('role', 'equalto', 'u') | map(attribute='c') | join(',') }}",
               {{"ms",
                 {{{"role", "u"}, {"c", "1"}},
                  {{"role", "a"}, {"c", "2"}},
                  {{"role", "u"}, {"c", "3"}}}}}) == "1,3");
}

TEST_CASE("chat templates: a context keeps its key order, which tojson and items show",
          "[chat_template]") {
  const auto ordered =
      Json::parse(R"({"tool": {"name": "f", "description": "d", "2": 0, "1": 0}})");
  CHECK(render("{{ tool | tojson }}", ordered) ==
        R"({"1": 0, "2": 0, "name": "f", "description": "d"})");
  CHECK(render("{% for k, v in tool.items() %}{{ k }}{% endfor %}", ordered) ==
        "12namedescription");
  const auto sorted = nlohmann::json::parse(R"({"tool": {"name": "f", "description": "d"}})");
  CHECK(render("{{ tool | tojson }}", sorted) == R"({"description": "d", "name": "f"})");
}

TEST_CASE("chat templates: strftime_now reads the injected clock", "[chat_template]") {
  ChatTemplateOptions options;
  options.now = [] {
    std::tm t{};
    t.tm_year = 2024 - 1900;
    t.tm_mon = 6;
    t.tm_mday = 3;
    t.tm_hour = 9;
    t.tm_min = 5;
    return t;
  };
  CHECK(render("{{ strftime_now('%d %b %Y, %B %m %H:%M %% %A') }}", Json::object(), options) ==
        "03 Jul 2024, July 07 09:05 % %A");
}

TEST_CASE("chat templates: syntax errors name the construct and its line",
          "[chat_template][errors]") {
  using Kind = ChatTemplateError::Kind;
  auto e = error_of("ok\n{{ messages ");
  CHECK(e.kind == Kind::kSyntax);
  CHECK(e.line == 2);
  CHECK_THAT(e.message, Contains("unclosed tag '{{'"));
  e = error_of("a\nb\n{% if x %}yes");
  CHECK(e.line == 3);
  CHECK_THAT(e.message, Contains("unclosed 'if'") && Contains("endif"));
  e = error_of("{% for x in y %}\n{% endif %}{% endfor %}");
  CHECK(e.line == 2);
  CHECK_THAT(e.message, Contains("endif"));
  e = error_of("\n\n  {% frobnicate x %}");
  CHECK(e.line == 3);
  CHECK(e.column == 6);
  CHECK_THAT(e.message, Contains("unknown tag 'frobnicate'"));
  CHECK_THAT(error_of("{% call m() %}x{% endcall %}").message, Contains("unsupported tag 'call'"));
  CHECK_THAT(error_of("{{ 'a\\qb' }}").message, Contains("unknown escape '\\q'"));
  CHECK_THAT(error_of("{{ 'never closed }}").message, Contains("unterminated string"));
  CHECK_THAT(error_of("{{ a b }}").message, Contains("expected '}}', found 'b'"));
  CHECK_THAT(error_of("{{ f(**kw) }}").message, Contains("unpacking"));
  CHECK_THAT(error_of("{# never closed").message, Contains("unclosed comment"));
  CHECK_THAT(error_of("{% set 1 = x %}").message, Contains("cannot assign"));
  CHECK_THAT(error_of("{{ x ! y }}").message, Contains("unexpected character '!'"));
}

TEST_CASE("chat templates: render errors name the filter, test or operation and its line",
          "[chat_template][errors]") {
  using Kind = ChatTemplateError::Kind;
  auto e = error_of("line one\n{{ 'x' | frobnicate }}");
  CHECK(e.kind == Kind::kRender);
  CHECK(e.line == 2);
  CHECK_THAT(e.message, Contains("unknown filter 'frobnicate'"));
  CHECK_THAT(error_of("{{ x is frobnicated }}").message, Contains("unknown test 'frobnicated'"));
  CHECK_THAT(error_of("{{ 5 | trim }}").message,
             Contains("filter 'trim' cannot apply to an integer"));
  CHECK_THAT(error_of("{{ x | length }}").message, Contains("'length'") && Contains("undefined"));
  CHECK_THAT(error_of("{{ 'a' + none }}").message, Contains("none"));
  CHECK_THAT(error_of("{{ nope() }}").message, Contains("'nope' is not callable"));
  CHECK_THAT(error_of("{% for c in 'abc' %}{% endfor %}").message,
             Contains("cannot loop over a string"));
  CHECK_THAT(error_of("{% set x = 1 %}{% set x.y = 2 %}").message, Contains("only of a namespace"));
  CHECK_THAT(error_of("{% break %}").message, Contains("'break' outside a loop"));
  CHECK_THAT(error_of("{{ x }}", {{"raise_exception", 1}}).message,
             Contains("clashes with a built-in"));

  e = error_of(
      "{% if messages[0].role != 'user' %}"
      "{{ raise_exception('Roles must alternate, ' ~ 1) }}{% endif %}",
      chat({{"assistant", "a"}}));
  CHECK(e.kind == Kind::kRaised);
  CHECK(e.message == "Roles must alternate, 1");
  CHECK(e.line == 1);
}

TEST_CASE("chat templates: hostile templates hit a bound, never a hang or a crash",
          "[chat_template][errors]") {
  using Kind = ChatTemplateError::Kind;
  ChatTemplateOptions small;
  small.max_output_bytes = 1000;
  small.max_iterations = 500;
  CHECK(error_of("{% for i in range(100000) %}{% endfor %}", Json::object(), small).kind ==
        Kind::kLimit);
  CHECK(error_of("{% for i in range(400) %}{% for j in range(400) %}{% endfor %}{% endfor %}",
                 Json::object(), small)
            .kind == Kind::kLimit);
  CHECK(error_of("{% for i in range(400) %}0123456789{% endfor %}", Json::object(), small).kind ==
        Kind::kLimit);
  const std::string doubling = "{% for i in range(30) %}{% set ns.x = ns.x + ns.x %}{% endfor %}";
  CHECK(error_of("{% set ns = namespace(x='ab') %}" + doubling, {}, small).kind == Kind::kLimit);
  CHECK(error_of("{% set ns = namespace(x=[1]) %}" + doubling, {}, small).kind == Kind::kLimit);
  CHECK(error_of("{{ 'x' | indent(100000000000) }}").kind == Kind::kLimit);
  CHECK(error_of("{{ range(1000000000) | length }}").kind == Kind::kLimit);

  // Runaway recursion, a namespace that holds itself, deep nesting in the source.
  CHECK(error_of("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}").kind == Kind::kLimit);
  CHECK(error_of("{% set ns = namespace() %}{% set ns.me = ns %}{{ ns }}").kind == Kind::kLimit);
  CHECK(error_of("{% set ns = namespace(l=[]) %}{% for i in range(1000) %}"
                 "{% set ns.l = [ns.l] %}{% endfor %}")
            .kind == Kind::kLimit);
  CHECK(error_of("{{ " + std::string(20000, '(') + "1" + std::string(20000, ')') + " }}").kind ==
        Kind::kSyntax);
  CHECK(error_of("{{ " + std::string(20000, '[') + std::string(20000, ']') + " }}").kind ==
        Kind::kSyntax);
  std::string chain = "{{ 1";
  for (int i = 0; i < 20000; ++i) chain += " + 1";
  CHECK(error_of(chain + " }}").kind == Kind::kSyntax);
  std::string nested;
  for (int i = 0; i < 20000; ++i) nested += "{% if true %}";
  CHECK(error_of(nested).kind == Kind::kSyntax);
  CHECK(error_of("{{ " + std::string(20000, '-') + "1 }}").kind == Kind::kSyntax);
}

TEST_CASE("chat templates: one parsed template renders from several threads at once",
          "[chat_template]") {
  const auto source = read_text(chat_templates_dir() + "/qwen3.jinja");
  const ChatTemplate qwen3 = parse_ok(source);
  const auto context =
      chat({{"system", "s"}, {"user", "u"}, {"assistant", "<think>t</think>a"}, {"user", "v"}});
  const auto expected = std::get<std::string>(qwen3.render(context));
  std::vector<std::thread> threads;
  std::vector<int> same(4, 0);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 50; ++i)
        same[t] += std::get<std::string>(qwen3.render(context)) == expected;
    });
  }
  for (auto& thread : threads) thread.join();
  CHECK(same == std::vector<int>(4, 50));
  CHECK_THAT(expected, Contains("<|im_start|>assistant\na<|im_end|>"));
}

}  // namespace osd::test
