// The OpenAI request and response formats: what is accepted and how it maps onto GenerateParams,
// each kind of bad request refused with OpenAI's error object naming the parameter, and the
// response bodies and stream chunks in the shapes OpenAI's clients read.
#include <catch2/catch.hpp>

#include "runtime/openai_api.hpp"

namespace osd::test {

namespace {

using json = nlohmann::json;
using namespace osd::openai;

ServedModel model() {
  ServedModel m;
  m.id = "default";
  m.context = 128;
  m.max_new_tokens = 100;
  m.vocab_size = 256;
  return m;
}

ParsedRequest ok(Endpoint e, const json& body) {
  auto r = parse_request(e, body.dump(), model());
  if (auto* err = std::get_if<ApiError>(&r)) FAIL(err->body().dump());
  return std::get<ParsedRequest>(r);
}

ApiError refused(Endpoint e, const std::string& body) {
  auto r = parse_request(e, body, model());
  if (!std::holds_alternative<ApiError>(r)) FAIL("accepted: " << body);
  return std::get<ApiError>(r);
}
ApiError refused(Endpoint e, const json& body) { return refused(e, body.dump()); }

const auto C = Endpoint::completions;
const auto Chat = Endpoint::chat_completions;

}  // namespace

TEST_CASE("openai: a completion request maps onto the runtime's parameters", "[openai]") {
  auto r = ok(C, {{"model", "default"}, {"prompt", "def f("}, {"max_tokens", 12}, {"temperature", 0},
                  {"top_p", 0.9}, {"seed", 7}, {"stop", "\n\n"}, {"stream", true},
                  {"stream_options", {{"include_usage", true}}}, {"user", "u1"}, {"top_k", 5},
                  {"domain", "python"}});
  CHECK(r.prompt_text == "def f(");
  CHECK_FALSE(r.prompt_is_tokens);
  CHECK(*r.max_tokens == 12);
  CHECK(r.temperature == 0);
  CHECK(r.top_p == 0.9);
  CHECK(*r.seed == 7);
  CHECK(r.stop == std::vector<std::string>{"\n\n"});
  CHECK(r.stream);
  CHECK(r.include_usage);
  CHECK(r.top_k == 5);
  CHECK(r.domain == "python");
  auto p = generate_params(r, {100, 101}, model(), 99, {3});
  REQUIRE(std::holds_alternative<GenerateParams>(p));
  const auto& g = std::get<GenerateParams>(p);
  CHECK(g.prompt_tokens == std::vector<int64_t>{100, 101});
  CHECK(g.max_new_tokens == 12);
  CHECK(g.seed == 7);
  CHECK(g.eos_ids == std::vector<int64_t>{3});
  CHECK(g.domain == "python");
  CHECK(g.stop == r.stop);
}

TEST_CASE("openai: prompts as token ids and one-element batches", "[openai]") {
  CHECK(ok(C, {{"prompt", {1, 2, 3}}}).prompt_tokens == std::vector<int64_t>{1, 2, 3});
  CHECK(ok(C, {{"prompt", {1, 2, 3}}}).prompt_is_tokens);
  CHECK(ok(C, {{"prompt", {"hi"}}}).prompt_text == "hi");
  CHECK(ok(C, {{"prompt", {{4, 5}}}}).prompt_tokens == std::vector<int64_t>{4, 5});
  CHECK(ok(C, {{"prompt", "x"}, {"stop", {"a", "b"}}}).stop.size() == 2);
  // "model" may be left out; null fields count as absent.
  CHECK(ok(C, {{"prompt", "x"}, {"max_tokens", nullptr}, {"seed", nullptr}}).max_tokens == std::nullopt);
  CHECK(*ok(C, {{"prompt", "x"}, {"max_tokens", 16.0}}).max_tokens == 16);
}

TEST_CASE("openai: defaults follow OpenAI: 16 tokens for completions, the context for chat",
          "[openai]") {
  auto c = generate_params(ok(C, {{"prompt", "x"}}), std::vector<int64_t>(10, 1), model(), 5, {});
  CHECK(std::get<GenerateParams>(c).max_new_tokens == kDefaultCompletionTokens);
  CHECK(std::get<GenerateParams>(c).seed == 5);  // unseeded: the server's fresh seed
  const json chat = {{"messages", {{{"role", "user"}, {"content", "hi"}}}}};
  auto d = generate_params(ok(Chat, chat), std::vector<int64_t>(10, 1), model(), 5, {});
  CHECK(std::get<GenerateParams>(d).max_new_tokens == 100);  // the server's limit
  auto e = generate_params(ok(Chat, chat), std::vector<int64_t>(60, 1), model(), 5, {});
  CHECK(std::get<GenerateParams>(e).max_new_tokens == 68);  // what the context leaves
}

TEST_CASE("openai: a request beyond the context is refused as OpenAI does", "[openai][errors]") {
  auto r = generate_params(ok(C, {{"prompt", "x"}, {"max_tokens", 50}}), std::vector<int64_t>(100, 1),
                           model(), 0, {});
  REQUIRE(std::holds_alternative<ApiError>(r));
  const auto& e = std::get<ApiError>(r);
  CHECK(e.status == 400);
  CHECK(e.code == "context_length_exceeded");
  CHECK_THAT(e.message, Catch::Contains("maximum context length is 128 tokens") &&
                            Catch::Contains("you requested 150 tokens (100 in the prompt, 50 in the completion)"));
  auto full = generate_params(ok(C, {{"prompt", "x"}}), std::vector<int64_t>(128, 1), model(), 0, {});
  CHECK(std::get<ApiError>(full).code == "context_length_exceeded");
  auto empty = generate_params(ok(C, {{"prompt", ""}}), {}, model(), 0, {});
  CHECK(std::get<ApiError>(empty).param == "prompt");
}

TEST_CASE("openai: chat messages are normalised for the template", "[openai]") {
  auto r = ok(Chat, {{"model", "default"},
                     {"messages",
                      {{{"role", "developer"}, {"content", "Be brief."}},
                       {{"role", "user"}, {"content", {{{"type", "text"}, {"text", "Hello "}},
                                                       {{"type", "text"}, {"text", "there"}}}}, {"name", "ann"}},
                       {{"role", "assistant"}, {"content", "Hi."}, {"tool_calls", json::array()}}}},
                     {"max_completion_tokens", 9},
                     {"logprobs", false},
                     {"response_format", {{"type", "text"}}},
                     {"presence_penalty", 0}});
  REQUIRE(r.messages.size() == 3);
  CHECK(r.messages[0]["role"] == "system");
  CHECK(r.messages[1]["content"] == "Hello there");
  CHECK(r.messages[1]["name"] == "ann");
  CHECK_FALSE(r.messages[2].contains("tool_calls"));
  CHECK(*r.max_tokens == 9);
}

TEST_CASE("openai: bad requests are refused naming the parameter", "[openai][errors]") {
  // Malformed JSON and wrong shapes.
  CHECK(refused(C, std::string("{\"prompt\": \"x\"")).code == "invalid_json");
  CHECK(refused(C, std::string("[1, 2]")).code == "invalid_type");
  CHECK(refused(C, std::string("")).status == 400);
  auto wrong = refused(C, {{"prompt", "x"}, {"max_tokens", "10"}});
  CHECK(wrong.param == "max_tokens");
  CHECK(wrong.code == "invalid_type");
  CHECK_THAT(wrong.message, Catch::Contains("must be an integer (got a string)"));
  CHECK(refused(C, {{"prompt", "x"}, {"max_tokens", 10.5}}).param == "max_tokens");
  CHECK(refused(C, {{"prompt", 5}}).param == "prompt");
  CHECK(refused(C, {{"prompt", {1, "a"}}}).param == "prompt");
  CHECK(refused(C, {{"prompt", {1, 300}}}).message.find("outside the vocabulary") != std::string::npos);
  CHECK(refused(C, {{"prompt", {"a", "b"}}}).message.find("batch of 2") != std::string::npos);
  CHECK(refused(C, json::object()).code == "missing_required_parameter");
  CHECK(refused(C, {{"prompt", "x"}, {"stream", "yes"}}).param == "stream");
  // Unknown fields, with the nearest known name.
  auto unknown = refused(C, {{"prompt", "x"}, {"max_new_token", 5}});
  CHECK(unknown.param == "max_new_token");
  CHECK(unknown.code == "unknown_parameter");
  CHECK_THAT(unknown.message, Catch::Contains("did you mean 'max_tokens'"));
  // The ZeroMQ protocol's name for it: pointed to OpenAI's, on both endpoints.
  CHECK_THAT(refused(C, {{"prompt", "x"}, {"max_new_tokens", 5}}).message,
             Catch::Contains("unknown field 'max_new_tokens' (did you mean 'max_tokens'?)"));
  CHECK_THAT(refused(Chat, {{"messages", {{{"role", "user"}, {"content", "x"}}}}, {"max_new_tokens", 5}}).message,
             Catch::Contains("did you mean 'max_tokens'"));
  // A name far from every known one: named, without a guess.
  auto far = refused(C, {{"prompt", "x"}, {"frobnicate", 1}});
  CHECK(far.message == "unknown field 'frobnicate'");
  CHECK(refused(Chat, {{"messages", {{{"role", "user"}, {"content", "x"}}}}, {"prompt", "x"}}).param == "prompt");
  // Absurd values.
  CHECK(refused(C, {{"prompt", "x"}, {"max_tokens", 0}}).param == "max_tokens");
  CHECK(refused(C, {{"prompt", "x"}, {"max_tokens", 1000000000}}).param == "max_tokens");
  CHECK(refused(C, {{"prompt", "x"}, {"max_tokens", -3}}).param == "max_tokens");
  CHECK(refused(C, {{"prompt", "x"}, {"temperature", -1}}).param == "temperature");
  CHECK(refused(C, {{"prompt", "x"}, {"temperature", 1e300}}).param == "temperature");
  CHECK(refused(C, {{"prompt", "x"}, {"top_p", 0}}).param == "top_p");
  CHECK(refused(C, {{"prompt", "x"}, {"top_p", 1.5}}).param == "top_p");
  CHECK(refused(C, {{"prompt", "x"}, {"stop", {""}}}).param == "stop");
  CHECK(refused(C, {{"prompt", "x"}, {"stop", json(std::vector<std::string>(17, "s"))}}).param == "stop");
  CHECK(refused(C, {{"prompt", "x"}, {"stop", std::string(2000, 's')}}).param == "stop");
  CHECK(refused(C, {{"prompt", "x"}, {"stop", 3}}).param == "stop");
  CHECK(refused(C, {{"prompt", "x"}, {"stream_options", {{"include_usage", true}}}}).param == "stream_options");
  CHECK(refused(C, {{"prompt", "x"}, {"stream", true}, {"stream_options", {{"bogus", 1}}}}).param == "stream_options");
  // What osd cannot do is refused, not ignored.
  CHECK(refused(C, {{"prompt", "x"}, {"n", 2}}).code == "unsupported_parameter");
  CHECK(ok(C, {{"prompt", "x"}, {"n", 1}}).prompt_text == "x");
  CHECK(refused(C, {{"prompt", "x"}, {"logprobs", 0}}).param == "logprobs");
  CHECK(refused(C, {{"prompt", "x"}, {"logprobs", 5}}).message.find("log-probabilities") != std::string::npos);
  CHECK(refused(C, {{"prompt", "x"}, {"echo", true}}).param == "echo");
  CHECK(refused(C, {{"prompt", "x"}, {"best_of", 3}}).param == "best_of");
  CHECK(refused(C, {{"prompt", "x"}, {"presence_penalty", 0.5}}).param == "presence_penalty");
  CHECK(refused(C, {{"prompt", "x"}, {"logit_bias", {{"5", 10}}}}).param == "logit_bias");
  const json user = {{"role", "user"}, {"content", "x"}};
  CHECK(refused(Chat, {{"messages", {user}}, {"logprobs", true}}).param == "logprobs");
  CHECK(refused(Chat, {{"messages", {user}}, {"top_logprobs", 3}}).param == "top_logprobs");
  CHECK(refused(Chat, {{"messages", {user}}, {"tools", {{{"type", "function"}}}}}).param == "tools");
  CHECK(refused(Chat, {{"messages", {user}}, {"response_format", {{"type", "json_object"}}}}).param ==
        "response_format");
  // Messages.
  CHECK(refused(Chat, {{"messages", json::array()}}).param == "messages");
  CHECK(refused(Chat, {{"messages", "hi"}}).param == "messages");
  CHECK(refused(Chat, {{"messages", {{{"role", "tool"}, {"content", "x"}}}}}).message.find("'tool'") !=
        std::string::npos);
  CHECK(refused(Chat, {{"messages", {{{"role", "user"}}}}}).message.find("needs \"content\"") != std::string::npos);
  CHECK(refused(Chat, {{"messages", {{{"role", "user"}, {"content", {{{"type", "image_url"}}}}}}}})
            .message.find("text only") != std::string::npos);
  CHECK(refused(Chat, {{"messages", {{{"role", "user"}, {"content", "x"}, {"audio", 1}}}}}).param == "messages");
}

TEST_CASE("openai: an unknown model is 404 model_not_found", "[openai][errors]") {
  auto e = refused(C, {{"model", "gpt-4"}, {"prompt", "x"}});
  CHECK(e.status == 404);
  CHECK(e.code == "model_not_found");
  CHECK_THAT(e.message, Catch::Contains("'gpt-4'") && Catch::Contains("'default'"));
}

TEST_CASE("openai: the runtime's errors become HTTP statuses", "[openai][errors]") {
  CHECK(runtime_error("busy", "queue full").status == 429);
  CHECK(runtime_error("busy", "queue full").type == "rate_limit_error");
  CHECK(runtime_error("shutting_down", "bye").status == 503);
  CHECK(runtime_error("invalid_request", "bad").status == 400);
  CHECK(runtime_error("prompt_too_long", "long").status == 400);
  CHECK(runtime_error("internal", "oops").status == 500);
  const auto body = runtime_error("busy", "queue full").body();
  CHECK(body["error"]["message"] == "queue full");
  CHECK(body["error"]["code"] == "busy");
  CHECK(body["error"]["param"].is_null());
  CHECK(body["error"]["type"] == "rate_limit_error");
}

TEST_CASE("openai: response bodies and chunks in OpenAI's shapes", "[openai]") {
  GenerateResult r;
  r.text = "Paris.";
  r.tokens = {1, 2, 3};
  r.finish = "eos";
  r.route = "english";
  r.num_drafts = 2;
  r.num_draft_tokens = 8;
  r.num_accepted_tokens = 6;
  r.ttft_ms = 12.5;
  Reply chat{Endpoint::chat_completions, "chatcmpl-osd-1", 1700000000, "default"};
  auto b = response_body(chat, r, 7);
  CHECK(b["object"] == "chat.completion");
  CHECK(b["choices"][0]["message"]["role"] == "assistant");
  CHECK(b["choices"][0]["message"]["content"] == "Paris.");
  CHECK(b["choices"][0]["finish_reason"] == "stop");
  CHECK(b["usage"] == json{{"prompt_tokens", 7}, {"completion_tokens", 3}, {"total_tokens", 10}});
  CHECK(b["osd"]["route"] == "english");
  CHECK(b["osd"]["acceptance"].get<double>() == 0.75);
  CHECK(b["osd"]["draft_tokens"] == 8);
  Reply cmpl{Endpoint::completions, "cmpl-osd-2", 1700000000, "default"};
  r.finish = "length";
  auto c = response_body(cmpl, r, 7);
  CHECK(c["object"] == "text_completion");
  CHECK(c["choices"][0]["text"] == "Paris.");
  CHECK(c["choices"][0]["finish_reason"] == "length");
  r.num_draft_tokens = 0;
  CHECK(response_body(cmpl, r, 7)["osd"]["acceptance"].is_null());
  // Stream chunks.
  auto role = role_chunk(chat, true);
  CHECK(role["object"] == "chat.completion.chunk");
  CHECK(role["choices"][0]["delta"]["role"] == "assistant");
  CHECK(role.contains("usage"));
  CHECK(role["usage"].is_null());
  CHECK(text_chunk(chat, "Pa", "", false)["choices"][0]["delta"]["content"] == "Pa");
  CHECK_FALSE(text_chunk(chat, "Pa", "", false).contains("usage"));
  auto last = text_chunk(chat, "", "stop", false);
  CHECK(last["choices"][0]["delta"] == json::object());
  CHECK(last["choices"][0]["finish_reason"] == "stop");
  CHECK(text_chunk(cmpl, "ris", "", false)["choices"][0]["text"] == "ris");
  auto u = usage_chunk(chat, 7, 3);
  CHECK(u["choices"] == json::array());
  CHECK(u["usage"]["total_tokens"] == 10);
  CHECK(sse_event(json{{"a", 1}}) == "data: {\"a\":1}\n\n");
  CHECK(std::string(sse_done()) == "data: [DONE]\n\n");
  auto models = models_body(model(), 5, {{"draft_routes", json::array()}});
  CHECK(models["data"][0]["id"] == "default");
  CHECK(models["data"][0]["object"] == "model");
}

TEST_CASE("openai: text cut inside a UTF-8 character is sent as U+FFFD, never as bad JSON",
          "[openai]") {
  const std::string cut = "caf\xC3";  // the first byte of "é"
  CHECK(dump(json(cut)) == "\"caf\xEF\xBF\xBD\"");
  CHECK_NOTHROW(json::parse(sse_event(json{{"text", cut}}).substr(6)));
}

TEST_CASE("stream text: no split characters and no stop-string prefix sent early", "[openai][stream]") {
  SECTION("a multi-byte character over three pieces appears once, whole") {
    StreamText t;
    CHECK(t.push("a\xE2") == "a");
    CHECK(t.push("\x82") == "");
    CHECK(t.push("\xAC b") == "\xE2\x82\xAC b");
    CHECK(t.finish("a\xE2\x82\xAC b") == "");
    CHECK(t.sent() == "a\xE2\x82\xAC b");
  }
  SECTION("a tail that may start a stop string waits") {
    StreamText t({"\n\n", "END"});
    CHECK(t.push("Hello\n") == "Hello");
    CHECK(t.push("") == "");
    // The runtime matched "\n\n" and cut it: the final text ends before it.
    CHECK(t.finish("Hello") == "");
    CHECK(t.sent() == "Hello");
  }
  SECTION("a held tail that turns out not to be a stop string is sent") {
    StreamText t({"END"});
    CHECK(t.push("the E") == "the ");
    CHECK(t.push("N") == "");
    // "D" completes the stop string: the runtime cuts it, so its piece is empty.
    CHECK(t.push("") == "");
    CHECK(t.finish("the ") == "");
    CHECK(t.sent() == "the ");
    // Even a whole stop string in the pieces is never sent.
    StreamText w({"END"});
    CHECK(w.push("the EN") == "the ");
    CHECK(w.push("D and") == "");
    CHECK(w.finish("the ") == "");
    StreamText u({"END"});
    CHECK(u.push("the EN") == "the ");
    CHECK(u.push("ough") == "ENough");
    CHECK(u.finish("the ENough") == "");
  }
  SECTION("what is still held at the end comes from the final text") {
    StreamText t({"\n\n"});
    CHECK(t.push("x\n") == "x");
    CHECK(t.finish("x\n") == "\n");
    CHECK(t.sent() == "x\n");
  }
}

}  // namespace osd::test
