#pragma once
// The OpenAI API's request and response formats, as pure functions (no sockets, no runtime):
// request JSON -> a validated ParsedRequest -> osd::GenerateParams, and osd's results -> the
// completion / chat completion bodies, their streamed chunks and OpenAI's error object. The HTTP
// server (runtime/http_server.cpp) only moves bytes between these and osd::Runtime.
//
// What is accepted (docs/HTTP.md): model, prompt (string, token ids, or a one-element list of
// either) or messages, max_tokens (max_completion_tokens), temperature, top_p, seed, stop (string
// or list), n = 1, stream, stream_options.include_usage, user; osd's extensions top_k and domain
// (the draft route). OpenAI fields osd cannot honour are accepted only at their neutral value
// (presence_penalty 0, echo false, logprobs null/false, ...) and refused otherwise; `user` is
// accepted and ignored. Unknown fields are refused by name with the nearest known one, so the
// ZeroMQ protocol's names get OpenAI's (max_new_tokens: "did you mean 'max_tokens'?"), as the
// ZeroMQ parser refuses unknown fields too (runtime/request_parser.hpp).
#include <nlohmann/json.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "runtime/runtime.hpp"

namespace osd::openai {

// An error as the OpenAI API returns it: an HTTP status and {"error": {message, type, param,
// code}} (param and code null when empty).
struct ApiError {
  int status = 400;
  std::string message;
  std::string type = "invalid_request_error";
  std::string param;
  std::string code;
  nlohmann::json body() const;
};

enum class Endpoint { completions, chat_completions };

// What the server serves, for validation and the responses.
struct ServedModel {
  std::string id = "osd";          // the model name clients send (others: 404)
  int64_t context = 1024;          // prompt + completion tokens must fit
  int64_t max_new_tokens = 4096;   // largest max_tokens
  int64_t vocab_size = 0;          // token-id prompts must lie in [0, vocab_size) (0: unchecked)
};

// A request whose JSON was read and checked; prompts are not tokenised yet.
struct ParsedRequest {
  Endpoint endpoint = Endpoint::completions;
  std::string model;
  // completions: text, or token ids when prompt_is_tokens
  std::string prompt_text;
  std::vector<int64_t> prompt_tokens;
  bool prompt_is_tokens = false;
  // chat: [{"role", "content"(string)[, "name"]}], roles system | user | assistant
  nlohmann::ordered_json messages = nlohmann::ordered_json::array();
  std::optional<int64_t> max_tokens;
  double temperature = 1.0;
  double top_p = 1.0;
  int64_t top_k = 0;
  std::optional<uint64_t> seed;
  std::vector<std::string> stop;
  bool stream = false;
  bool include_usage = false;
  std::string domain;
};

inline constexpr int64_t kDefaultCompletionTokens = 16;  // OpenAI's default for completions
inline constexpr size_t kMaxStopStrings = 16;
inline constexpr size_t kMaxStopBytes = 1024;

std::variant<ParsedRequest, ApiError> parse_request(Endpoint endpoint, std::string_view body,
                                                    const ServedModel& model);

// The runtime's request for a parsed request and its prompt tokens: limits checked against the
// context (OpenAI's context_length_exceeded), max_tokens defaulted (completions: 16; chat: what
// the context leaves, at most the server's limit), `seed_if_absent` used when the request has no
// seed (OpenAI: unseeded requests are not reproducible).
std::variant<GenerateParams, ApiError> generate_params(const ParsedRequest& r,
                                                       std::vector<int64_t> prompt,
                                                       const ServedModel& model,
                                                       uint64_t seed_if_absent,
                                                       std::vector<int64_t> eos_ids);

// A runtime error code (GenerateResult::error_code) as an HTTP error: busy -> 429,
// shutting_down -> 503, invalid_request / prompt_too_long / ... -> 400, others -> 500.
ApiError runtime_error(const std::string& code, const std::string& message);
ApiError not_found(const std::string& message, const std::string& code = "not_found");

// osd's finish reasons as OpenAI's: eos and stop -> "stop", length -> "length".
std::string finish_reason(const std::string& finish);

// Identity of one response: every chunk of a stream repeats it.
struct Reply {
  Endpoint endpoint = Endpoint::completions;
  std::string id;  // cmpl-... / chatcmpl-...
  int64_t created = 0;
  std::string model;
};

// osd's speculative statistics of one request, the extension field "osd" that OpenAI's clients
// ignore: route, draft_rounds, draft_tokens, accepted_tokens, acceptance (null without drafts),
// ttft_ms, total_ms.
nlohmann::json osd_extension(const GenerateResult& r);
nlohmann::json usage(int64_t prompt_tokens, int64_t completion_tokens);

// A whole (non-streamed) response.
nlohmann::json response_body(const Reply& reply, const GenerateResult& r, int64_t prompt_tokens);
// One streamed chunk. Chat: the first carries the role; `finish` (OpenAI's reason, "" while
// streaming) closes the choice; with include_usage every chunk has "usage": null and
// usage_chunk (no choices) comes last.
nlohmann::json role_chunk(const Reply& reply, bool include_usage);
nlohmann::json text_chunk(const Reply& reply, const std::string& text, const std::string& finish,
                          bool include_usage);
nlohmann::json usage_chunk(const Reply& reply, int64_t prompt_tokens, int64_t completion_tokens);

// JSON text for the wire: invalid UTF-8 (a generation cut inside a character) becomes U+FFFD.
std::string dump(const nlohmann::json& j);
std::string dump(const nlohmann::ordered_json& j);
// One server-sent event ("data: ...\n\n"), and the stream's end marker.
std::string sse_event(const nlohmann::json& j);
inline const char* sse_done() { return "data: [DONE]\n\n"; }

// GET /v1/models: the target, with osd's metadata (draft routes, chat template) as "osd".
nlohmann::json models_body(const ServedModel& model, int64_t created, const nlohmann::json& metadata);

// Streamed text with what could still change held back: an unfinished UTF-8 character, and a
// tail that may be the start of a stop string (the runtime cuts a matched stop string from the
// final text, so its first tokens must not have been sent). push() returns what may be sent
// now; finish() returns the rest of the final text, so the pieces add up to it.
class StreamText {
 public:
  explicit StreamText(std::vector<std::string> stop = {});
  std::string push(const std::string& piece);
  std::string finish(const std::string& final_text);
  const std::string& sent() const { return sent_; }

 private:
  std::vector<std::string> stop_;
  std::string pending_, sent_;
};

}  // namespace osd::openai
