#pragma once
// The HTTP front end: OpenAI's API (POST /v1/completions, POST /v1/chat/completions, GET
// /v1/models), GET /health and GET /metrics (Prometheus text), on cpp-httplib. Like the ZeroMQ
// front end it is a client of osd::Runtime: each completion becomes a Runtime::submit whose
// callbacks feed the connection's thread; the request formats live in runtime/openai_api.hpp.
//
// Threads: httplib accepts on one thread and serves each connection on a pool thread (`threads`
// of them; a connection holds its thread while it is open, keep-alive included). A streamed
// response is written by its connection's thread as the runtime's tokens arrive.
//
// A client that goes away mid-response (its socket closes, or a write fails or blocks longer
// than `io_timeout_s`) has its request cancelled, so its KV cache slot is freed at once. A
// client that leaves before its first token is noticed at that token.
#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <variant>
#include <vector>

#include "runtime/openai_api.hpp"

namespace osd {

class Runtime;
class TextTokenizer;

struct HttpServerOptions {
  std::string host = "127.0.0.1";
  int port = 8000;                  // 0: a free port (see HttpServer::port)
  size_t max_body_bytes = 1 << 20;  // larger request bodies get 413
  int threads = 64;                 // connections served at once
  int io_timeout_s = 10;            // a read or write that stalls this long drops the connection
  int keep_alive_s = 5;             // an idle keep-alive connection is closed after this
  int64_t retry_after_s = 1;        // Retry-After of 429 (busy) answers
  openai::ServedModel model;
  // GET /v1/models: the model's "osd" field (draft routes, chat template).
  nlohmann::json model_metadata = nlohmann::json::object();
  std::shared_ptr<const TextTokenizer> tokenizer;   // required: text prompts and replies
  std::vector<int64_t> default_eos;                 // eos ids of every request
  // Chat messages -> prompt tokens (the chat template); empty: /v1/chat/completions answers 400
  // with `chat_unavailable`.
  using ChatPrompt =
      std::function<std::variant<std::vector<int64_t>, openai::ApiError>(const nlohmann::ordered_json& messages)>;
  ChatPrompt chat_prompt;
  std::string chat_unavailable = "this server has no chat template";
};

class HttpServer {
 public:
  // Binds and starts serving; null + *error when it cannot (address in use, bad options).
  static std::unique_ptr<HttpServer> start(Runtime& runtime, HttpServerOptions options, std::string* error);
  ~HttpServer();
  int port() const;             // as bound
  std::string address() const;  // http://host:port
  // Requests being served (admitted completions whose answer is not finished).
  int64_t in_flight() const;
  // Refuses new completions (503 shutting_down; /health answers 503) while those in flight go on.
  void drain();
  // Stops accepting and waits for the connections' threads. With cancel_in_flight, completions
  // still running are cancelled first (each client gets its error); otherwise they finish.
  void stop(bool cancel_in_flight = false);

 private:
  struct Impl;
  explicit HttpServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace osd
