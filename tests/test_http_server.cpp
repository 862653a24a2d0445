// The HTTP front end over 127.0.0.1 on a real runtime (tiny models, bytes as text): completions
// and chat equal target-only greedy decoding, streamed chunks add up to the whole answer, bad
// requests get OpenAI's error object with the right status while the server keeps serving, a
// client that disconnects mid-stream has its request cancelled, and /metrics agrees with
// stats_json.
#include "tests/test_common.hpp"

#ifdef OSD_WITH_HTTP

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <httplib.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "models/text/chat_prompt.hpp"
#include "models/text/text_tokenizer.hpp"
#include "runtime/http_server.hpp"
#include "runtime/runtime.hpp"
#include "tests/http/prometheus_parse.hpp"
#include "tests/spec_fixtures.hpp"

using namespace osd;
using namespace osd::test;
using json = nlohmann::json;

namespace {

struct Served {
  std::shared_ptr<Transformer> target, draft;
  std::unique_ptr<Runtime> rt;
  std::unique_ptr<HttpServer> http;
  ~Served() {
    if (http) http->stop(true);
    if (rt) rt->shutdown(false);
  }
  httplib::Client client() const {
    httplib::Client c("127.0.0.1", http->port());
    c.set_read_timeout(120, 0);
    return c;
  }
};

// Tokens below 128 are ASCII bytes, so every generated text is valid UTF-8.
std::unique_ptr<Served> serve(int64_t max_in_flight = 256, size_t max_body = 1 << 16, int64_t max_len = 128) {
  auto s = std::make_unique<Served>();
  s->target = peaked_model(tiny_config(128, 64, 2), 1);
  s->draft = perturbed_copy(*s->target, 2, 0.003);
  RuntimeOptions o;
  o.target = s->target;
  o.draft = s->draft;
  o.max_batch = 16;
  o.max_len = max_len;
  o.max_new_tokens_limit = max_len;  // a request may use the whole context
  o.max_in_flight = max_in_flight;
  o.threads = 2;
  o.tokenizer = load_text_tokenizer("bytes");
  std::string err;
  s->rt = Runtime::create(o, &err);
  REQUIRE(s->rt);
  HttpServerOptions h;
  h.port = 0;
  h.threads = 32;
  h.max_body_bytes = max_body;
  h.io_timeout_s = 5;
  h.model.id = "tiny";
  h.model.context = max_len;
  h.model.max_new_tokens = 4096;
  h.model.vocab_size = 128;
  h.tokenizer = o.tokenizer;
  auto chat = std::make_shared<ChatPrompt>(ChatPrompt::load("plain", "", o.tokenizer));
  h.chat_prompt = [chat](const nlohmann::ordered_json& m) -> std::variant<std::vector<int64_t>, openai::ApiError> {
    return std::get<std::vector<int64_t>>(chat->tokens(m));
  };
  s->http = HttpServer::start(*s->rt, h, &err);
  INFO(err);
  REQUIRE(s->http);
  return s;
}

std::string bytes_text(const std::vector<int64_t>& tokens) {
  std::string s;
  for (auto t : tokens) s += static_cast<char>(t);
  return s;
}

json post(const Served& s, const std::string& path, const json& body, int* status = nullptr) {
  auto c = s.client();
  auto r = c.Post(path.c_str(), body.dump(), "application/json");
  REQUIRE(r);
  if (status) *status = r->status;
  return json::parse(r->body);
}

// The data payloads of a server-sent event stream, "[DONE]" included.
std::vector<std::string> sse_payloads(const std::string& body) {
  std::vector<std::string> out;
  size_t pos = 0;
  while ((pos = body.find("data: ", pos)) != std::string::npos) {
    const auto end = body.find("\n\n", pos);
    out.push_back(body.substr(pos + 6, end - pos - 6));
    pos = end;
  }
  return out;
}

// Waits (up to a minute) until `done` holds; the condition is then checked by the caller.
template <class F>
void wait_until(F done) {
  for (int i = 0; i < 600 && !done(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
}

json runtime_stats(Served& s) { return json::parse(s.rt->stats_json()); }

// A prompt whose greedy continuation has no near-ties (a batched and a single forward agree).
std::vector<int64_t> clear_prompt(Transformer& target, int64_t n) {
  return greedy_cases(target, 1, 8, n, 5).first[0];
}

}  // namespace

TEST_CASE("http: completions equal target-only greedy, streamed or not", "[http]") {
  auto s = serve();
  const auto kPrompt = clear_prompt(*s->target, 12);
  const auto ref = bytes_text(greedy_reference(*s->target, kPrompt, 12));
  int status = 0;
  auto whole = post(*s, "/v1/completions",
                    {{"model", "tiny"}, {"prompt", kPrompt}, {"max_tokens", 12}, {"temperature", 0}}, &status);
  CHECK(status == 200);
  CHECK(whole["object"] == "text_completion");
  CHECK(whole["choices"][0]["text"] == ref);
  CHECK(whole["choices"][0]["finish_reason"] == "length");
  CHECK(whole["usage"]["prompt_tokens"] == kPrompt.size());
  CHECK(whole["usage"]["completion_tokens"] == 12);
  CHECK(whole["osd"]["route"] == "default");
  CHECK(whole["osd"]["draft_tokens"].get<int64_t>() >= whole["osd"]["accepted_tokens"].get<int64_t>());

  auto c = s->client();
  auto r = c.Post("/v1/completions",
                  json{{"prompt", kPrompt}, {"max_tokens", 12}, {"temperature", 0}, {"stream", true},
                       {"stream_options", {{"include_usage", true}}}}
                      .dump(),
                  "application/json");
  REQUIRE(r);
  CHECK(r->status == 200);
  CHECK(r->get_header_value("Content-Type") == "text/event-stream");
  auto events = sse_payloads(r->body);
  REQUIRE(events.size() >= 3);
  CHECK(events.back() == "[DONE]");
  std::string streamed, finish;
  json usage;
  for (size_t i = 0; i + 1 < events.size(); ++i) {
    auto e = json::parse(events[i]);
    CHECK(e["id"] == json::parse(events[0])["id"]);
    if (e["choices"].empty()) {
      usage = e["usage"];
      continue;
    }
    CHECK(e.contains("usage"));  // null in every chunk but the last, with include_usage
    streamed += e["choices"][0]["text"].get<std::string>();
    if (!e["choices"][0]["finish_reason"].is_null()) {
      finish = e["choices"][0]["finish_reason"];
      CHECK(e["osd"]["route"] == "default");
    }
  }
  CHECK(streamed == ref);
  CHECK(finish == "length");
  CHECK(usage["completion_tokens"] == 12);
  CHECK(usage["prompt_tokens"] == kPrompt.size());
}

TEST_CASE("http: text prompts, stop strings and chat through the plain template", "[http]") {
  auto s = serve();
  const auto kPrompt = clear_prompt(*s->target, 16);
  const std::string prompt = bytes_text(kPrompt);
  auto ref = bytes_text(greedy_reference(*s->target, kPrompt, 16));
  auto r = post(*s, "/v1/completions", {{"prompt", prompt}, {"max_tokens", 16}, {"temperature", 0}});
  CHECK(r["choices"][0]["text"] == ref);
  // A stop string: the text ends before it, streamed or not.
  const std::string stop = ref.substr(5, 2);
  const auto cut = ref.substr(0, ref.find(stop));
  auto stopped = post(*s, "/v1/completions",
                      {{"prompt", prompt}, {"max_tokens", 16}, {"temperature", 0}, {"stop", {stop}}});
  CHECK(stopped["choices"][0]["text"] == cut);
  CHECK(stopped["choices"][0]["finish_reason"] == "stop");
  auto c = s->client();
  auto streamed = c.Post("/v1/completions",
                         json{{"prompt", prompt}, {"max_tokens", 16}, {"temperature", 0}, {"stop", stop},
                              {"stream", true}}
                             .dump(),
                         "application/json");
  REQUIRE(streamed);
  std::string text;
  for (const auto& e : sse_payloads(streamed->body))
    if (e != "[DONE]") text += json::parse(e)["choices"][0]["text"].get<std::string>();
  CHECK(text == cut);

  // Chat: the plain template's prompt, then the same greedy decoding.
  std::vector<int64_t> chat_prompt;
  for (unsigned char ch : std::string("user: Hi\nassistant:")) chat_prompt.push_back(ch);
  const auto chat_ref = bytes_text(greedy_reference(*s->target, chat_prompt, 10));
  auto chat = post(*s, "/v1/chat/completions",
                   {{"model", "tiny"}, {"messages", {{{"role", "user"}, {"content", "Hi"}}}}, {"max_tokens", 10},
                    {"temperature", 0}});
  CHECK(chat["object"] == "chat.completion");
  CHECK(chat["choices"][0]["message"]["content"] == chat_ref);
  CHECK(chat["usage"]["prompt_tokens"] == chat_prompt.size());
  auto chat_stream = c.Post("/v1/chat/completions",
                            json{{"messages", {{{"role", "user"}, {"content", "Hi"}}}}, {"max_tokens", 10},
                                 {"temperature", 0}, {"stream", true}}
                                .dump(),
                            "application/json");
  REQUIRE(chat_stream);
  auto events = sse_payloads(chat_stream->body);
  REQUIRE(events.size() >= 3);
  CHECK(json::parse(events[0])["choices"][0]["delta"]["role"] == "assistant");
  std::string content;
  for (size_t i = 0; i + 1 < events.size(); ++i) {
    const auto delta = json::parse(events[i])["choices"][0]["delta"];
    if (delta.contains("content")) content += delta["content"].get<std::string>();
  }
  CHECK(content == chat_ref);
}

TEST_CASE("http: each bad request gets its error and the server keeps serving", "[http][errors]") {
  auto s = serve(/*max_in_flight=*/256, /*max_body=*/4096);
  auto c = s->client();
  auto check = [&](httplib::Result r, int status, const std::string& code) {
    REQUIRE(r);
    INFO(r->body);
    CHECK(r->status == status);
    auto j = json::parse(r->body, nullptr, false);
    REQUIRE(j.is_object());
    REQUIRE(j.contains("error"));
    CHECK(j["error"].contains("message"));
    CHECK(j["error"].contains("type"));
    CHECK(j["error"].contains("param"));
    if (!code.empty()) CHECK(j["error"]["code"] == code);
  };
  check(c.Post("/v1/completions", "{\"prompt\": ", "application/json"), 400, "invalid_json");
  check(c.Post("/v1/completions", json{{"prompt", "x"}, {"max_tokens", "ten"}}.dump(), "application/json"), 400,
        "invalid_type");
  check(c.Post("/v1/completions", json{{"prompt", "x"}, {"max_new_tokens", 5}}.dump(), "application/json"), 400,
        "unknown_parameter");
  check(c.Post("/v1/completions", json{{"prompt", "x"}, {"temperature", 9}}.dump(), "application/json"), 400, "");
  check(c.Post("/v1/completions", json{{"prompt", "x"}, {"n", 3}}.dump(), "application/json"), 400,
        "unsupported_parameter");
  check(c.Post("/v1/completions", json{{"model", "gpt-4"}, {"prompt", "x"}}.dump(), "application/json"), 404,
        "model_not_found");
  check(c.Get("/v1/nothing"), 404, "unknown_route");
  check(c.Post("/v1/completions", std::string(5000, ' '), "application/json"), 413, "request_too_large");
  check(c.Post("/v1/completions", json{{"prompt", std::vector<int64_t>(200, 65)}}.dump(), "application/json"), 400,
        "context_length_exceeded");
  // Still serving, on the same connection and on new ones.
  auto fine = c.Post("/v1/completions", json{{"prompt", "ok"}, {"max_tokens", 3}}.dump(), "application/json");
  REQUIRE(fine);
  CHECK(fine->status == 200);
  CHECK(json::parse(fine->body)["usage"]["completion_tokens"] == 3);
  auto models = s->client().Get("/v1/models");
  REQUIRE(models);
  CHECK(json::parse(models->body)["data"][0]["id"] == "tiny");
  auto health = s->client().Get("/health");
  REQUIRE(health);
  CHECK(health->status == 200);
  CHECK(json::parse(health->body)["status"] == "ok");
}

TEST_CASE("http: a full queue answers 429 with Retry-After, draining answers 503", "[http][errors]") {
  auto s = serve(/*max_in_flight=*/1);
  std::atomic<int> ok{0}, busy{0}, other{0};
  std::vector<std::thread> clients;
  for (int i = 0; i < 6; ++i)
    clients.emplace_back([&] {
      auto c = s->client();
      auto r = c.Post("/v1/completions", json{{"prompt", "abc"}, {"max_tokens", 60}}.dump(), "application/json");
      if (!r) return ++other, void();
      if (r->status == 200) ++ok;
      else if (r->status == 429 && r->get_header_value("Retry-After") == "1" &&
               json::parse(r->body)["error"]["code"] == "busy")
        ++busy;
      else
        ++other;
    });
  for (auto& t : clients) t.join();
  CHECK(ok >= 1);
  CHECK(busy >= 1);
  CHECK(other == 0);
  s->http->drain();
  auto c = s->client();
  auto r = c.Post("/v1/completions", json{{"prompt", "abc"}, {"max_tokens", 2}}.dump(), "application/json");
  REQUIRE(r);
  CHECK(r->status == 503);
  CHECK(json::parse(r->body)["error"]["code"] == "shutting_down");
  auto health = c.Get("/health");
  REQUIRE(health);
  CHECK(health->status == 503);
}

TEST_CASE("http: a client that disconnects mid-stream has its request cancelled", "[http]") {
  auto s = serve(256, 1 << 16, /*max_len=*/2048);
  // A raw client: send a long streamed request, read until the first token's chunk, then close.
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(s->http->port()));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  const std::string body = json{{"prompt", "Hello"}, {"max_tokens", 2000}, {"stream", true}}.dump();
  const std::string req = "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                          "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
  REQUIRE(::write(fd, req.data(), req.size()) == static_cast<ssize_t>(req.size()));
  std::string got;
  char buf[4096];
  while (got.find("\"text\"") == std::string::npos) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    REQUIRE(n > 0);
    got.append(buf, static_cast<size_t>(n));
  }
  CHECK(got.rfind("HTTP/1.1 200", 0) == 0);
  ::close(fd);
  // The server notices, cancels, and the runtime frees the request.
  auto cancelled = [&] {
    auto st = runtime_stats(*s);
    return st["metrics"]["requests_finished"].value("cancelled", 0) == 1 && st["intake"]["in_flight"] == 0 &&
           s->http->in_flight() == 0;
  };
  wait_until(cancelled);
  auto st = runtime_stats(*s);
  CHECK(st["metrics"]["requests_finished"].value("cancelled", 0) == 1);
  CHECK(st["metrics"]["requests_finished"].value("length", 0) == 0);
  CHECK(st["intake"]["in_flight"] == 0);
  CHECK(s->http->in_flight() == 0);
  auto metrics = s->client().Get("/metrics");
  REQUIRE(metrics);
  const auto page = parse_prometheus(metrics->body);
  CHECK(page.value("osd_http_disconnects_total") == 1);
  CHECK(page.value("osd_requests_finished_total", {{"reason", "cancelled"}}) == 1);
  // And serves the next client.
  auto next = post(*s, "/v1/completions", {{"prompt", "Hi"}, {"max_tokens", 4}});
  CHECK(next["usage"]["completion_tokens"] == 4);
}

TEST_CASE("http: 16 concurrent clients, streamed and not, all equal greedy", "[http]") {
  auto s = serve();
  auto [prompts, ref] = greedy_cases(*s->target, 16, 6, 10, 21);
  std::atomic<int> wrong{0}, failed{0};
  std::vector<std::thread> clients;
  for (int c = 0; c < 16; ++c)
    clients.emplace_back([&, c] {
      auto cl = s->client();
      for (int k = 0; k < 3; ++k) {
        const int i = (c + k * 5) % 16;
        const bool stream = (c + k) % 2 == 0;
        auto r = cl.Post("/v1/completions",
                         json{{"prompt", prompts[i]}, {"max_tokens", 10}, {"temperature", 0}, {"stream", stream}}.dump(),
                         "application/json");
        if (!r || r->status != 200) {
          ++failed;
          continue;
        }
        std::string text;
        if (stream) {
          for (const auto& e : sse_payloads(r->body))
            if (e != "[DONE]") text += json::parse(e)["choices"][0]["text"].get<std::string>();
        } else {
          text = json::parse(r->body)["choices"][0]["text"].get<std::string>();
        }
        wrong += text != bytes_text(ref[i]);
      }
    });
  for (auto& t : clients) t.join();
  CHECK(failed == 0);
  CHECK(wrong == 0);
}

TEST_CASE("http: /metrics agrees with stats_json, acceptance labelled by route name", "[http][prometheus]") {
  auto s = serve();
  for (int i = 0; i < 4; ++i)
    post(*s, "/v1/completions", {{"prompt", "abc" + std::to_string(i)}, {"max_tokens", 20}, {"temperature", 0}});
  const auto stats = runtime_stats(*s);
  auto r = s->client().Get("/metrics");
  REQUIRE(r);
  CHECK(r->status == 200);
  const auto page = parse_prometheus(r->body);
  const auto& route = stats["metrics"]["routes"]["default"];
  const double acceptance = route["acceptance_rate"].get<double>();
  CHECK(acceptance > 0);
  CHECK(acceptance == Approx(route["num_accepted_tokens"].get<double>() / route["num_draft_tokens"].get<double>()));
  CHECK(page.value("osd_acceptance_rate", {{"route", "default"}}) == acceptance);
  CHECK(page.value("osd_recent_acceptance_rate", {{"route", "default"}}) == route["recent_acceptance_rate"].get<double>());
  CHECK(page.value("osd_num_draft_tokens_total", {{"route", "default"}}) == route["num_draft_tokens"].get<double>());
  CHECK(page.value("osd_num_accepted_tokens_total", {{"route", "default"}}) ==
        route["num_accepted_tokens"].get<double>());
  CHECK(page.value("osd_requests_finished_total", {{"reason", "length"}}) == 4);
  CHECK(page.value("osd_time_to_first_token_seconds_count") == 4);
  CHECK(page.value("osd_e2e_request_latency_seconds_count") == 4);
  CHECK(page.value("osd_request_generation_tokens_sum") == 80);
  // Acceptance lengths: as many rounds as drafts, as many accepted tokens as the counter.
  CHECK(page.value("osd_acceptance_length_count", {{"route", "default"}, {"draft_version", "0"}}) ==
        route["num_drafts"].get<double>());
  CHECK(page.value("osd_acceptance_length_sum", {{"route", "default"}, {"draft_version", "0"}}) ==
        route["num_accepted_tokens"].get<double>());
  CHECK(page.value("osd_http_responses_total", {{"path", "/v1/completions"}, {"status", "200"}}) == 4);
  CHECK(r->body.find("draft=\"0\"") == std::string::npos);
}

#endif  // OSD_WITH_HTTP
