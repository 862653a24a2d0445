#include "runtime/openai_api.hpp"

#include <algorithm>
#include <cmath>
#include <functional>
#include <map>
#include <set>

#include "models/common/nearest_name.hpp"
#include "models/text/utf8.hpp"

namespace osd::openai {

using json = nlohmann::json;
using ojson = nlohmann::ordered_json;

namespace {

ApiError bad(const std::string& param, const std::string& message,
             const std::string& code = "invalid_value") {
  ApiError e;
  e.status = 400;
  e.param = param;
  e.message = message;
  e.code = code;
  return e;
}

const char* type_name(const json& v) {
  switch (v.type()) {
    case json::value_t::null: return "null";
    case json::value_t::boolean: return "a boolean";
    case json::value_t::string: return "a string";
    case json::value_t::array: return "an array";
    case json::value_t::object: return "an object";
    case json::value_t::number_float: return "a number with a fraction";
    default: return "a number";
  }
}

// Reads one request object field by field. The first problem is kept; later reads are no-ops.
class FieldReader {
 public:
  explicit FieldReader(const json& j) : j_(j) {}
  std::optional<ApiError> error;

  // Present and not null (OpenAI's clients send null for "not given" in places).
  bool given(const char* key) {
    seen_.insert(key);
    if (error) return false;
    const auto it = j_.find(key);
    return it != j_.end() && !it->is_null();
  }
  const json& at(const char* key) const { return j_.at(key); }

  void fail(ApiError e) {
    if (!error) error = std::move(e);
  }
  void wrong_type(const char* key, const char* expected) {
    fail(bad(key, std::string(key) + " must be " + expected + " (got " + type_name(j_.at(key)) + ")",
             "invalid_type"));
  }

  bool integer(const char* key, int64_t& out) {
    if (!given(key)) return false;
    const auto& v = at(key);
    if (v.is_number_integer()) {
      if (v.is_number_unsigned() && v.get<uint64_t>() > uint64_t(INT64_MAX)) {
        fail(bad(key, std::string(key) + " is too large"));
        return false;
      }
      out = v.get<int64_t>();
      return true;
    }
    // 16.0 reads as 16; 16.5 does not.
    if (v.is_number_float() && std::isfinite(v.get<double>()) && v.get<double>() == std::floor(v.get<double>()) &&
        std::fabs(v.get<double>()) < 9e15) {
      out = static_cast<int64_t>(v.get<double>());
      return true;
    }
    wrong_type(key, "an integer");
    return false;
  }
  bool number(const char* key, double& out) {
    if (!given(key)) return false;
    if (!at(key).is_number()) return wrong_type(key, "a number"), false;
    out = at(key).get<double>();
    return true;
  }
  bool boolean(const char* key, bool& out) {
    if (!given(key)) return false;
    if (!at(key).is_boolean()) return wrong_type(key, "true or false"), false;
    out = at(key).get<bool>();
    return true;
  }
  bool string(const char* key, std::string& out) {
    if (!given(key)) return false;
    if (!at(key).is_string()) return wrong_type(key, "a string"), false;
    out = at(key).get<std::string>();
    return true;
  }
  // An OpenAI field osd does not implement: accepted only at its neutral value.
  void neutral(const char* key, const std::function<bool(const json&)>& is_neutral,
               const std::string& why) {
    if (!given(key)) return;
    if (!is_neutral(at(key)))
      fail(bad(key, std::string(key) + " is not supported by osd: " + why, "unsupported_parameter"));
  }
  // Fields neither read nor declared: an error naming the first, with the nearest known name.
  void refuse_unknown(const std::vector<std::string>& known) {
    if (error) return;
    for (const auto& [key, value] : j_.items()) {
      if (seen_.count(key)) continue;
      const std::string best = nearest_name(key, known);
      const std::string hint = best.empty() ? "" : " (did you mean '" + best + "'?)";
      fail(bad(key, "unknown field '" + key + "'" + hint, "unknown_parameter"));
      return;
    }
  }
  std::vector<std::string> seen() const { return {seen_.begin(), seen_.end()}; }

 private:
  const json& j_;
  std::set<std::string> seen_;
};

bool is_zero(const json& v) { return v.is_number() && v.get<double>() == 0.0; }
bool is_false(const json& v) { return v.is_boolean() && !v.get<bool>(); }
bool is_empty(const json& v) { return (v.is_object() || v.is_array() || v.is_string()) && v.empty(); }

// A token-id list, or nullopt (not such a list).
std::optional<std::vector<int64_t>> token_list(const json& v) {
  if (!v.is_array() || v.empty()) return std::nullopt;
  std::vector<int64_t> out;
  for (const auto& t : v) {
    if (!t.is_number_integer()) return std::nullopt;
    out.push_back(t.get<int64_t>());
  }
  return out;
}

void read_prompt(FieldReader& f, ParsedRequest& r, const ServedModel& model) {
  if (!f.given("prompt")) {
    if (!f.error) f.fail(bad("prompt", "prompt is required", "missing_required_parameter"));
    return;
  }
  const json* p = &f.at("prompt");
  const char* shape = "prompt must be a string, a list of token ids, or a one-element list of either";
  // A batch of prompts ([string] or [[ids]]) is accepted with one element: n = 1.
  if (p->is_array() && !p->empty() && (p->front().is_string() || p->front().is_array())) {
    if (p->size() != 1)
      return f.fail(bad("prompt", "osd answers one prompt per request (got a batch of " +
                                      std::to_string(p->size()) + ")"));
    p = &p->front();
  }
  if (p->is_string()) {
    r.prompt_text = p->get<std::string>();
    return;
  }
  auto ids = token_list(*p);
  if (!ids) return f.fail(bad("prompt", shape, "invalid_type"));
  for (auto t : *ids)
    if (t < 0 || (model.vocab_size > 0 && t >= model.vocab_size))
      return f.fail(bad("prompt", "prompt token " + std::to_string(t) + " is outside the vocabulary [0, " +
                                      std::to_string(model.vocab_size) + ")"));
  r.prompt_tokens = std::move(*ids);
  r.prompt_is_tokens = true;
}

// Message content: a string, or a list of text parts ({"type": "text", "text": ...}).
std::optional<std::string> message_text(const json& content, const std::string& where, FieldReader& f) {
  if (content.is_string()) return content.get<std::string>();
  if (content.is_array()) {
    std::string text;
    for (const auto& part : content) {
      if (!part.is_object() || !part.contains("type") || !part["type"].is_string()) {
        f.fail(bad("messages", where + ".content parts must be objects with a \"type\"", "invalid_type"));
        return std::nullopt;
      }
      if (part["type"] != "text") {
        f.fail(bad("messages", where + ".content has a '" + part["type"].get<std::string>() +
                                   "' part: osd serves text only", "unsupported_parameter"));
        return std::nullopt;
      }
      if (!part.contains("text") || !part["text"].is_string()) {
        f.fail(bad("messages", where + ".content text parts need a string \"text\"", "invalid_type"));
        return std::nullopt;
      }
      text += part["text"].get<std::string>();
    }
    return text;
  }
  f.fail(bad("messages", where + ".content must be a string or a list of text parts (got " +
                             type_name(content) + ")", "invalid_type"));
  return std::nullopt;
}

void read_messages(FieldReader& f, ParsedRequest& r) {
  if (!f.given("messages")) {
    if (!f.error) f.fail(bad("messages", "messages is required", "missing_required_parameter"));
    return;
  }
  const auto& ms = f.at("messages");
  if (!ms.is_array()) return f.wrong_type("messages", "a list of messages");
  if (ms.empty()) return f.fail(bad("messages", "messages must not be empty"));
  for (size_t i = 0; i < ms.size(); ++i) {
    const auto& m = ms[i];
    const std::string where = "messages[" + std::to_string(i) + "]";
    if (!m.is_object()) return f.fail(bad("messages", where + " must be an object", "invalid_type"));
    if (!m.contains("role") || !m["role"].is_string())
      return f.fail(bad("messages", where + " needs a string \"role\"", "invalid_type"));
    std::string role = m["role"].get<std::string>();
    if (role == "developer") role = "system";  // OpenAI's newer name for system instructions
    if (role != "system" && role != "user" && role != "assistant")
      return f.fail(bad("messages", where + ".role '" + role +
                                        "' is not supported (system, user, assistant, developer)"));
    for (const auto& [key, value] : m.items())
      if (key != "role" && key != "content" && key != "name" &&
          !(key == "tool_calls" && is_empty(value)) && !(key == "refusal" && value.is_null()))
        return f.fail(bad("messages", where + " has field '" + key + "', which osd does not support",
                          "unsupported_parameter"));
    ojson out = {{"role", role}};
    if (!m.contains("content") || m["content"].is_null())
      return f.fail(bad("messages", where + " needs \"content\"", "missing_required_parameter"));
    auto text = message_text(m["content"], where, f);
    if (!text) return;
    out["content"] = *text;
    if (m.contains("name")) {
      if (!m["name"].is_string()) return f.fail(bad("messages", where + ".name must be a string", "invalid_type"));
      out["name"] = m["name"].get<std::string>();
    }
    r.messages.push_back(std::move(out));
  }
}

void read_stop(FieldReader& f, ParsedRequest& r) {
  if (!f.given("stop")) return;
  const auto& s = f.at("stop");
  if (s.is_string()) {
    r.stop.push_back(s.get<std::string>());
  } else if (s.is_array()) {
    for (const auto& x : s) {
      if (!x.is_string()) return f.wrong_type("stop", "a string or a list of strings");
      r.stop.push_back(x.get<std::string>());
    }
  } else {
    return f.wrong_type("stop", "a string or a list of strings");
  }
  if (r.stop.size() > kMaxStopStrings)
    return f.fail(bad("stop", "at most " + std::to_string(kMaxStopStrings) + " stop strings (got " +
                                  std::to_string(r.stop.size()) + ")"));
  for (const auto& x : r.stop) {
    if (x.empty()) return f.fail(bad("stop", "stop strings must not be empty"));
    if (x.size() > kMaxStopBytes)
      return f.fail(bad("stop", "stop strings must be at most " + std::to_string(kMaxStopBytes) + " bytes"));
  }
}

}  // namespace

json ApiError::body() const {
  return {{"error",
           {{"message", message},
            {"type", type},
            {"param", param.empty() ? json(nullptr) : json(param)},
            {"code", code.empty() ? json(nullptr) : json(code)}}}};
}

std::variant<ParsedRequest, ApiError> parse_request(Endpoint endpoint, std::string_view body,
                                                    const ServedModel& model) {
  json j = json::parse(body.begin(), body.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded())
    return bad("", "the body is not valid JSON (send one JSON object)", "invalid_json");
  if (!j.is_object()) return bad("", std::string("the body must be a JSON object (got ") + type_name(j) + ")",
                                 "invalid_type");
  ParsedRequest r;
  r.endpoint = endpoint;
  const bool chat = endpoint == Endpoint::chat_completions;
  FieldReader f(j);

  f.string("model", r.model);
  if (chat) read_messages(f, r);
  else read_prompt(f, r, model);

  int64_t max_tokens = 0;
  if (f.integer("max_tokens", max_tokens)) r.max_tokens = max_tokens;
  if (chat && f.integer("max_completion_tokens", max_tokens)) r.max_tokens = max_tokens;
  if (r.max_tokens && (*r.max_tokens < 1 || *r.max_tokens > model.max_new_tokens))
    f.fail(bad(chat && f.given("max_completion_tokens") ? "max_completion_tokens" : "max_tokens",
               "max_tokens must be in [1, " + std::to_string(model.max_new_tokens) + "] (got " +
                   std::to_string(*r.max_tokens) + ")"));
  if (f.number("temperature", r.temperature) && !(r.temperature >= 0 && r.temperature <= 2))
    f.fail(bad("temperature", "temperature must be in [0, 2] (got " + json(r.temperature).dump() + ")"));
  if (f.number("top_p", r.top_p) && !(r.top_p > 0 && r.top_p <= 1))
    f.fail(bad("top_p", "top_p must be in (0, 1] (got " + json(r.top_p).dump() + ")"));
  if (f.integer("top_k", r.top_k) && (r.top_k < -1 || r.top_k > (int64_t{1} << 20)))
    f.fail(bad("top_k", "top_k must be 0 or -1 (off) or a positive count (got " + std::to_string(r.top_k) + ")"));
  if (r.top_k < 0) r.top_k = 0;  // vLLM's -1: off
  if (f.given("seed")) {
    const auto& s = f.at("seed");
    if (s.is_number_unsigned()) r.seed = s.get<uint64_t>();
    else if (s.is_number_integer()) r.seed = static_cast<uint64_t>(s.get<int64_t>());
    else f.wrong_type("seed", "an integer");
  }
  read_stop(f, r);
  int64_t n = 1;
  if (f.integer("n", n) && n != 1)
    f.fail(bad("n", "n must be 1: osd returns one choice per request (send n requests instead)",
               "unsupported_parameter"));
  f.boolean("stream", r.stream);
  if (f.given("stream_options")) {
    const auto& so = f.at("stream_options");
    if (!so.is_object()) {
      f.wrong_type("stream_options", "an object");
    } else if (!r.stream) {
      f.fail(bad("stream_options", "stream_options is only allowed with stream: true"));
    } else {
      for (const auto& [key, value] : so.items()) {
        if (key == "include_usage" && value.is_boolean()) r.include_usage = value.get<bool>();
        else if (key == "include_usage" && !value.is_null())
          f.fail(bad("stream_options", "stream_options.include_usage must be true or false", "invalid_type"));
        else if (key != "include_usage")
          f.fail(bad("stream_options", "unknown field stream_options." + key, "unknown_parameter"));
      }
    }
  }
  std::string ignored;
  f.string("user", ignored);  // an end-user id for abuse monitoring: nothing to do with it here
  f.string("domain", r.domain);

  // OpenAI fields osd cannot honour: their neutral values only.
  f.neutral("presence_penalty", is_zero, "osd samples without penalties (send 0 or omit it)");
  f.neutral("frequency_penalty", is_zero, "osd samples without penalties (send 0 or omit it)");
  f.neutral("logit_bias", is_empty, "osd applies no logit bias (send {} or omit it)");
  const std::string no_logprobs = "osd does not return log-probabilities (omit logprobs)";
  if (chat) {
    f.neutral("logprobs", is_false, no_logprobs);
    f.neutral("top_logprobs", is_zero, no_logprobs);
    f.neutral("response_format",
              [](const json& v) { return v.is_object() && v.size() == 1 && v.value("type", "") == "text"; },
              "osd produces free text only ({\"type\": \"text\"})");
    f.neutral("tools", is_empty, "osd does not call tools");
    f.neutral("tool_choice", [](const json& v) { return v == "none" || v == "auto"; },
              "osd does not call tools");
    f.neutral("functions", is_empty, "osd does not call functions");
    f.neutral("function_call", [](const json& v) { return v == "none" || v == "auto"; },
              "osd does not call functions");
    f.neutral("parallel_tool_calls", [](const json& v) { return v.is_boolean(); }, "must be true or false");
    f.neutral("store", is_false, "osd stores nothing");
    f.neutral("metadata", [](const json& v) { return v.is_object(); }, "metadata must be an object");
    f.neutral("modalities", [](const json& v) { return v == json::array({"text"}); },
              "osd produces text only ([\"text\"])");
    f.neutral("service_tier", [](const json& v) { return v == "auto" || v == "default"; },
              "osd has one service tier");
  } else {
    f.neutral("logprobs", [](const json&) { return false; }, no_logprobs);
    f.neutral("echo", is_false, "osd does not echo prompts");
    f.neutral("best_of", [](const json& v) { return v.is_number() && v.get<double>() == 1; },
              "best_of must be 1: osd returns one choice per request");
    f.neutral("suffix", is_empty, "osd does not insert text (no suffix)");
  }
  std::vector<std::string> known = f.seen();
  f.refuse_unknown(known);
  if (f.error) return *f.error;
  if (!r.model.empty() && r.model != model.id)
    return not_found("the model '" + r.model + "' does not exist; this server serves '" + model.id +
                         "' (GET /v1/models)",
                     "model_not_found");
  return r;
}

std::variant<GenerateParams, ApiError> generate_params(const ParsedRequest& r,
                                                       std::vector<int64_t> prompt,
                                                       const ServedModel& model,
                                                       uint64_t seed_if_absent,
                                                       std::vector<int64_t> eos_ids) {
  const int64_t P = static_cast<int64_t>(prompt.size());
  if (P == 0) return bad(r.endpoint == Endpoint::chat_completions ? "messages" : "prompt", "the prompt is empty");
  const int64_t room = model.context - P;
  if (room < 1 || (r.max_tokens && *r.max_tokens > room)) {
    const int64_t asked = r.max_tokens.value_or(r.endpoint == Endpoint::completions ? kDefaultCompletionTokens : 1);
    ApiError e = bad(r.endpoint == Endpoint::chat_completions ? "messages" : "prompt",
                     "This model's maximum context length is " + std::to_string(model.context) +
                         " tokens. However, you requested " + std::to_string(P + asked) + " tokens (" +
                         std::to_string(P) + " in the " +
                         (r.endpoint == Endpoint::chat_completions ? "messages" : "prompt") + ", " +
                         std::to_string(asked) +
                         " in the completion). Please reduce the length of the prompt or max_tokens.",
                     "context_length_exceeded");
    return e;
  }
  GenerateParams p;
  p.prompt_tokens = std::move(prompt);
  const int64_t fallback = r.endpoint == Endpoint::completions ? kDefaultCompletionTokens : model.max_new_tokens;
  p.max_new_tokens = std::min(r.max_tokens.value_or(fallback), room);
  p.temperature = r.temperature;
  p.top_p = r.top_p;
  p.top_k = r.top_k;
  p.seed = r.seed.value_or(seed_if_absent);
  p.stop = r.stop;
  p.eos_ids = std::move(eos_ids);
  p.domain = r.domain;
  p.stream = true;
  return p;
}

ApiError runtime_error(const std::string& code, const std::string& message) {
  ApiError e;
  e.message = message;
  e.code = code;
  if (code == "busy") {
    e.status = 429;
    e.type = "rate_limit_error";  // the openai clients retry 429 after Retry-After
  } else if (code == "shutting_down") {
    e.status = 503;
    e.type = "server_error";
  } else if (code == "invalid_request" || code == "prompt_too_long" || code == "context_length_exceeded" ||
             code == "duplicate_id") {
    e.status = 400;
  } else {
    e.status = 500;
    e.type = "server_error";
  }
  return e;
}

ApiError not_found(const std::string& message, const std::string& code) {
  ApiError e;
  e.status = 404;
  e.message = message;
  e.code = code;
  return e;
}

std::string finish_reason(const std::string& finish) {
  if (finish == "eos" || finish == "stop") return "stop";
  return finish;  // length; cancelled / error are answered as errors, not as choices
}

json osd_extension(const GenerateResult& r) {
  return {{"route", r.route.empty() ? json(nullptr) : json(r.route)},
          {"draft_rounds", r.num_drafts},
          {"draft_tokens", r.num_draft_tokens},
          {"accepted_tokens", r.num_accepted_tokens},
          {"acceptance", r.num_draft_tokens > 0
                             ? json(double(r.num_accepted_tokens) / double(r.num_draft_tokens))
                             : json(nullptr)},
          {"ttft_ms", r.ttft_ms},
          {"total_ms", r.total_ms}};
}

json usage(int64_t prompt_tokens, int64_t completion_tokens) {
  return {{"prompt_tokens", prompt_tokens},
          {"completion_tokens", completion_tokens},
          {"total_tokens", prompt_tokens + completion_tokens}};
}

namespace {

json envelope(const Reply& reply, bool chunk) {
  const bool chat = reply.endpoint == Endpoint::chat_completions;
  return {{"id", reply.id},
          {"object", chat ? (chunk ? "chat.completion.chunk" : "chat.completion") : "text_completion"},
          {"created", reply.created},
          {"model", reply.model}};
}

}  // namespace

json response_body(const Reply& reply, const GenerateResult& r, int64_t prompt_tokens) {
  json j = envelope(reply, false);
  json choice = {{"index", 0}};
  if (reply.endpoint == Endpoint::chat_completions)
    choice["message"] = {{"role", "assistant"}, {"content", r.text}};
  else
    choice["text"] = r.text;
  choice["logprobs"] = nullptr;
  choice["finish_reason"] = finish_reason(r.finish);
  j["choices"] = json::array({choice});
  j["usage"] = usage(prompt_tokens, static_cast<int64_t>(r.tokens.size()));
  j["osd"] = osd_extension(r);
  return j;
}

json role_chunk(const Reply& reply, bool include_usage) {
  json j = envelope(reply, true);
  j["choices"] = json::array({{{"index", 0},
                               {"delta", {{"role", "assistant"}, {"content", ""}}},
                               {"logprobs", nullptr},
                               {"finish_reason", nullptr}}});
  if (include_usage) j["usage"] = nullptr;
  return j;
}

json text_chunk(const Reply& reply, const std::string& text, const std::string& finish,
                bool include_usage) {
  json j = envelope(reply, true);
  json choice = {{"index", 0}};
  if (reply.endpoint == Endpoint::chat_completions)
    choice["delta"] = finish.empty() || !text.empty() ? json{{"content", text}} : json::object();
  else
    choice["text"] = text;
  choice["logprobs"] = nullptr;
  choice["finish_reason"] = finish.empty() ? json(nullptr) : json(finish);
  j["choices"] = json::array({choice});
  if (include_usage) j["usage"] = nullptr;
  return j;
}

json usage_chunk(const Reply& reply, int64_t prompt_tokens, int64_t completion_tokens) {
  json j = envelope(reply, true);
  j["choices"] = json::array();
  j["usage"] = usage(prompt_tokens, completion_tokens);
  return j;
}

std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }
std::string dump(const ojson& j) { return j.dump(-1, ' ', false, ojson::error_handler_t::replace); }

std::string sse_event(const json& j) { return "data: " + dump(j) + "\n\n"; }

json models_body(const ServedModel& model, int64_t created, const json& metadata) {
  return {{"object", "list"},
          {"data", json::array({{{"id", model.id},
                                 {"object", "model"},
                                 {"created", created},
                                 {"owned_by", "osd"},
                                 {"max_model_len", model.context},
                                 {"osd", metadata}}})}};
}

StreamText::StreamText(std::vector<std::string> stop) : stop_(std::move(stop)) {}

std::string StreamText::push(const std::string& piece) {
  pending_ += piece;
  size_t ready = pending_.size() - text::incomplete_tail(pending_);
  // A whole stop string is never sent (the runtime cuts it from the final text).
  for (const auto& s : stop_) ready = std::min(ready, pending_.find(s));
  // The longest tail of the ready text that a stop string starts with.
  size_t hold = 0;
  for (const auto& s : stop_)
    for (size_t n = std::min(s.size() - 1, ready); n > hold; --n)
      if (pending_.compare(ready - n, n, s, 0, n) == 0) {
        hold = n;
        break;
      }
  ready -= hold;
  std::string out = pending_.substr(0, ready);
  pending_.erase(0, ready);
  sent_ += out;
  return out;
}

std::string StreamText::finish(const std::string& final_text) {
  pending_.clear();
  if (final_text.size() <= sent_.size() || final_text.compare(0, sent_.size(), sent_) != 0) return {};
  std::string rest = final_text.substr(sent_.size());
  sent_ = final_text;
  return rest;
}

}  // namespace osd::openai
