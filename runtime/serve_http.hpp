#pragma once
// osd-serve's HTTP front end from its settings: the served model's name and limits, the
// tokenizer, the chat template (osd.chat-template), the draft routes for GET /v1/models.
#include <memory>
#include <string>
#include <vector>

#include "runtime/http_server.hpp"
#include "runtime/serve_config.hpp"

namespace osd {

struct HttpServeInputs {
  std::shared_ptr<const TextTokenizer> tokenizer;
  std::string tokenizer_dir;             // where tokenizer_config.json lives ("" for bytes)
  std::vector<std::string> route_names;  // empty: target-only
  std::vector<std::string> route_drafts; // each route's draft model spec
  int64_t context = 0;                   // min(max-len, the target's positions)
  int64_t vocab_size = 0;
};

// The model name clients send: osd.served-model-name, else the target spec's last path part.
std::string served_model_name(const ServeSettings& s);

// Starts the HTTP front end on osd.http; null + *error on failure. *chat_source says which chat
// template serves ("checkpoint", "plain", a path) or why chat is off.
std::unique_ptr<HttpServer> start_http(Runtime& runtime, const ServeSettings& s, const HttpServeInputs& in,
                                       std::string* chat_source, std::string* error);

}  // namespace osd
