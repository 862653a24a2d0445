#include "runtime/serve_http.hpp"

#include "models/text/chat_prompt.hpp"
#include "models/text/text_tokenizer.hpp"

namespace osd {

std::string served_model_name(const ServeSettings& s) {
  if (!s.served_model_name.empty()) return s.served_model_name;
  std::string spec = s.target;
  while (spec.size() > 1 && spec.back() == '/') spec.pop_back();
  const auto slash = spec.rfind('/');
  return slash == std::string::npos ? spec : spec.substr(slash + 1);
}

std::unique_ptr<HttpServer> start_http(Runtime& runtime, const ServeSettings& s, const HttpServeInputs& in,
                                       std::string* chat_source, std::string* error) {
  HttpServerOptions o;
  if (!parse_host_port(s.http, &o.host, &o.port, error)) return nullptr;
  o.max_body_bytes = static_cast<size_t>(s.http_max_body_bytes);
  o.threads = static_cast<int>(s.http_threads);
  o.io_timeout_s = static_cast<int>(s.http_timeout_s);
  o.model.id = served_model_name(s);
  o.model.context = in.context;
  o.model.max_new_tokens = s.max_new_tokens;
  o.model.vocab_size = in.vocab_size;
  o.tokenizer = in.tokenizer;
  if (in.tokenizer && in.tokenizer->special_tokens().eos) o.default_eos = {*in.tokenizer->special_tokens().eos};
  std::shared_ptr<const ChatPrompt> chat;
  try {
    chat = std::make_shared<const ChatPrompt>(ChatPrompt::load(s.chat_template, in.tokenizer_dir, in.tokenizer));
  } catch (const std::exception& e) {
    *error = e.what();
    return nullptr;
  }
  if (chat->available()) {
    o.chat_prompt = [chat](const nlohmann::ordered_json& messages)
        -> std::variant<std::vector<int64_t>, openai::ApiError> {
      auto tokens = chat->tokens(messages);
      if (auto* e = std::get_if<ChatTemplateError>(&tokens)) {
        openai::ApiError api;
        api.param = "messages";
        api.code = e->kind == ChatTemplateError::Kind::kRaised ? "chat_template_refused" : "chat_template_error";
        api.message = e->kind == ChatTemplateError::Kind::kRaised
                          ? "the chat template refused these messages: " + e->message
                          : "the chat template (" + chat->source() + ") failed on these messages: " + e->message;
        return api;
      }
      return std::get<std::vector<int64_t>>(std::move(tokens));
    };
    *chat_source = chat->source();
  } else {
    o.chat_unavailable = chat->unavailable_reason();
    *chat_source = "off (" + chat->unavailable_reason() + ")";
  }
  nlohmann::json routes = nlohmann::json::array();
  for (size_t r = 0; r < in.route_names.size(); ++r)
    routes.push_back({{"name", in.route_names[r]},
                      {"draft", r < in.route_drafts.size() ? in.route_drafts[r] : std::string()}});
  o.model_metadata = {{"draft_routes", routes}, {"chat_template", chat->available() ? chat->source() : "none"}};
  return HttpServer::start(runtime, std::move(o), error);
}

}  // namespace osd
