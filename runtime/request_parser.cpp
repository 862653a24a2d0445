#include "runtime/request_parser.hpp"

#include <algorithm>

#include <nlohmann/json.hpp>

#include "models/common/nearest_name.hpp"

namespace osd {

using json = nlohmann::json;

namespace {

ParsedRequest invalid(const std::string& code, const std::string& message, const std::string& id = "",
                      bool id_known = false) {
  ParsedRequest r;
  r.op = RequestOp::invalid;
  r.error_code = code;
  r.error_message = message;
  r.id = id;
  r.id_known = id_known;
  return r;
}

// Fills r.params from a generate object, or sets r's error.
void parse_generate(const json& j, const RequestParserOptions& opt, ParsedRequest& r) {
  auto fail = [&](const std::string& msg) {
    r.op = RequestOp::invalid;
    r.error_code = "invalid_request";
    r.error_message = msg;
    r.id_known = true;
  };
  GenerateParams& p = r.params;
  auto int_field = [&](const char* key, int64_t& out) {
    if (!j.contains(key)) return true;
    if (!j[key].is_number_integer()) return fail(std::string(key) + " must be an integer"), false;
    out = j[key].get<int64_t>();
    return true;
  };
  auto num_field = [&](const char* key, double& out) {
    if (!j.contains(key)) return true;
    if (!j[key].is_number()) return fail(std::string(key) + " must be a number"), false;
    out = j[key].get<double>();
    return true;
  };
  auto int_array = [&](const char* key, std::vector<int64_t>& out) {
    if (!j[key].is_array()) return fail(std::string(key) + " must be an array of integers"), false;
    for (const auto& t : j[key]) {
      if (!t.is_number_integer()) return fail(std::string(key) + " must be an array of integers"), false;
      out.push_back(t.get<int64_t>());
    }
    return true;
  };
  int64_t seed = 0;
  if (!int_field("max_new_tokens", p.max_new_tokens) || !int_field("top_k", p.top_k) ||
      !num_field("temperature", p.temperature) || !num_field("top_p", p.top_p) || !int_field("seed", seed))
    return;
  p.seed = static_cast<uint64_t>(seed);
  if (j.contains("tokens")) {
    if (!int_array("tokens", p.prompt_tokens)) return;
  } else if (j.contains("prompt")) {
    if (!j["prompt"].is_string()) return fail("prompt must be a string");
    if (!opt.encode) return fail("this server has no tokenizer: send \"tokens\"");
    p.prompt_tokens = opt.encode(j["prompt"].get<std::string>());
  } else {
    return fail("generate needs \"prompt\" or \"tokens\"");
  }
  if (j.contains("stop")) {
    if (!j["stop"].is_array()) return fail("stop must be an array of strings");
    for (const auto& s : j["stop"]) {
      if (!s.is_string()) return fail("stop must be an array of strings");
      p.stop.push_back(s.get<std::string>());
    }
  }
  if (j.contains("eos")) {
    if (!int_array("eos", p.eos_ids)) return;
  } else {
    p.eos_ids = opt.default_eos;
  }
  if (j.contains("domain")) {
    if (!j["domain"].is_string()) return fail("domain must be a string");
    p.domain = j["domain"].get<std::string>();
  }
  if (j.contains("stream")) {
    if (!j["stream"].is_boolean()) return fail("stream must be true or false");
    p.stream = j["stream"].get<bool>();
  }
  r.op = RequestOp::generate;
}

// The fields each op reads (docs/PROTOCOL.md). Every op takes "id"; stats and health ignore it.
const std::vector<std::string>& accepted_fields(const std::string& op) {
  static const std::vector<std::string> generate = {
      "op", "id", "prompt", "tokens", "max_new_tokens", "temperature", "top_p", "top_k", "seed", "stop",
      "eos", "domain", "stream"};
  static const std::vector<std::string> other = {"op", "id"};
  return op == "generate" ? generate : other;
}

// The first field of j that `op` does not read, as an error message naming the nearest accepted
// field and all of them; "" when every field is known. A misspelt field is refused rather than
// ignored: ignoring it would serve the request with a default the client did not ask for.
std::string unknown_field(const json& j, const std::string& op) {
  const auto& known = accepted_fields(op);
  for (const auto& [key, value] : j.items()) {
    if (std::find(known.begin(), known.end(), key) != known.end()) continue;
    // A long name is cut (the reply's JSON replaces a UTF-8 sequence the cut splits).
    std::string msg = "unknown field " + (key.size() > 64 ? key.substr(0, 64) + "..." : key);
    const std::string best = nearest_name(key, known);
    if (!best.empty()) msg += " (did you mean " + best + "?)";
    msg += "; " + op + " accepts";
    for (size_t i = 0; i < known.size(); ++i) msg += (i ? ", " : " ") + known[i];
    return msg;
  }
  return "";
}

}  // namespace

ParsedRequest parse_request(const std::string& frame, const RequestParserOptions& opt) {
  if (frame.size() > opt.max_frame_bytes)
    return invalid("frame_too_large", "frame of " + std::to_string(frame.size()) + " bytes exceeds " +
                                          std::to_string(opt.max_frame_bytes));
  json j;
  try {
    j = json::parse(frame);
  } catch (const json::exception& e) {
    return invalid("malformed_json", e.what());
  }
  if (!j.is_object()) return invalid("invalid_request", "a request is one JSON object");
  if (!j.contains("op") || !j["op"].is_string()) return invalid("invalid_request", "missing string field \"op\"");
  const auto op = j["op"].get<std::string>();
  if (op != "generate" && op != "cancel" && op != "stats" && op != "health")
    return invalid("unknown_op", "unknown op '" + op + "' (generate, cancel, stats, health)");
  ParsedRequest r;
  if (j.contains("id")) {
    if (!j["id"].is_string() || j["id"].get<std::string>().empty())
      return invalid("invalid_request", "id must be a non-empty string");
    r.id = j["id"].get<std::string>();
    if (r.id.size() > opt.max_id_bytes)
      return invalid("invalid_request",
                     "id must have at most " + std::to_string(opt.max_id_bytes) + " bytes (got " +
                         std::to_string(r.id.size()) + ")");
  }
  if (const std::string unknown = unknown_field(j, op); !unknown.empty())
    return invalid("invalid_request", unknown, r.id, true);
  if (op == "stats") return ParsedRequest{RequestOp::stats};
  if (op == "health") return ParsedRequest{RequestOp::health};
  if (op == "cancel") {
    if (r.id.empty()) return invalid("invalid_request", "cancel needs a string \"id\"");
    r.op = RequestOp::cancel;
    return r;
  }
  parse_generate(j, opt, r);
  return r;
}

}  // namespace osd
