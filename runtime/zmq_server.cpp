#include "runtime/zmq_server.hpp"

#include <atomic>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>
#include <zmq.hpp>
#include <zmq_addon.hpp>

#include "runtime/prometheus.hpp"
#include "runtime/runtime.hpp"

namespace osd {

using json = nlohmann::json;

size_t utf8_complete_prefix(const std::string& s) {
  // Walk back over at most 3 continuation bytes to the last lead byte.
  size_t n = s.size(), i = n;
  int cont = 0;
  while (i > 0 && cont < 4) {
    const auto c = static_cast<unsigned char>(s[i - 1]);
    if ((c & 0xC0) != 0x80) {
      size_t need = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 1;
      return (n - (i - 1)) >= need ? n : i - 1;
    }
    --i;
    ++cont;
  }
  return n;  // only continuation bytes: invalid anyway, pass through
}

namespace {

std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

std::string hex(const std::string& bytes) {
  static const char* d = "0123456789abcdef";
  std::string out;
  for (unsigned char c : bytes) out += {d[c >> 4], d[c & 15]};
  return out;
}

struct Route {
  std::string identity;
  std::string client_id;
};

}  // namespace

// The reply path shared with the runtime's callbacks: it outlives the server if requests finish
// after stop(); replies are then dropped.
struct ReplyChannel {
  zmq::context_t ctx{1};
  zmq::socket_t push{ctx, zmq::socket_type::push};  // used only by the runtime's client thread
  std::atomic<bool> open{true};
  void send(const std::string& internal, const std::string& payload) {
    if (!open) return;
    // Unbounded queue (hwm 0): never drops while the server runs; never blocks once it stopped.
    push.send(zmq::buffer(internal), zmq::send_flags::sndmore | zmq::send_flags::dontwait);
    push.send(zmq::buffer(payload), zmq::send_flags::dontwait);
  }
};

struct ZmqServer::Impl {
  Runtime* rt = nullptr;
  ZmqServerOptions opt;
  std::shared_ptr<ReplyChannel> channel = std::make_shared<ReplyChannel>();
  zmq::socket_t router{channel->ctx, zmq::socket_type::router};
  zmq::socket_t pull{channel->ctx, zmq::socket_type::pull};
  zmq::socket_t http{channel->ctx, zmq::socket_type::stream};  // raw TCP: GET /metrics
  std::string metrics_bound;
  std::string bound;
  std::atomic<bool> running{true};
  std::thread thread;
  // Owned by the server thread:
  std::map<std::string, Route> routes;                  // internal id -> client
  std::map<std::string, std::set<std::string>> by_peer; // identity -> internal ids
  int64_t next_id = 1;

  void loop();
  void handle(const std::string& identity, const std::string& frame);
  void generate(const std::string& identity, const json& j);
  void send(const std::string& identity, const json& j);
  void deliver(const std::string& internal, const std::string& payload, bool final);
  void serve_http();
};

// One HTTP/1.0 exchange per connection on a ZMQ_STREAM socket: answer, then close.
void ZmqServer::Impl::serve_http() {
  std::vector<zmq::message_t> parts;
  if (!zmq::recv_multipart(http, std::back_inserter(parts), zmq::recv_flags::dontwait) || parts.size() != 2) return;
  const std::string peer = parts[0].to_string(), req = parts[1].to_string();
  if (req.empty()) return;  // connect / disconnect notification
  std::string status = "200 OK", body;
  if (req.rfind("GET /metrics", 0) == 0) {
    body = prometheus_text(json::parse(rt->stats_json()));
  } else {
    status = "404 Not Found";
    body = "osd serves GET /metrics\n";
  }
  const std::string resp = "HTTP/1.0 " + status + "\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: " +
                           std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" + body;
  http.send(zmq::buffer(peer), zmq::send_flags::sndmore);
  http.send(zmq::buffer(resp), zmq::send_flags::none);
  http.send(zmq::buffer(peer), zmq::send_flags::sndmore);
  http.send(zmq::message_t(), zmq::send_flags::none);  // empty frame: close the connection
}

void ZmqServer::Impl::send(const std::string& identity, const json& j) {
  try {
    router.send(zmq::buffer(identity), zmq::send_flags::sndmore);
    router.send(zmq::buffer(dump(j)), zmq::send_flags::none);
  } catch (const zmq::error_t& e) {
    if (e.num() != EHOSTUNREACH) throw;
    // The peer is gone: cancel what it still has in flight; results are then dropped.
    auto it = by_peer.find(identity);
    if (it != by_peer.end())
      for (const auto& internal : it->second) rt->cancel(internal);
  }
}

void ZmqServer::Impl::deliver(const std::string& internal, const std::string& payload, bool final) {
  auto it = routes.find(internal);
  if (it == routes.end()) return;
  const Route route = it->second;
  if (final) {
    by_peer[route.identity].erase(internal);
    if (by_peer[route.identity].empty()) by_peer.erase(route.identity);
    routes.erase(it);
  }
  json j = json::parse(payload);
  j["id"] = route.client_id;
  send(route.identity, j);
}

void ZmqServer::Impl::generate(const std::string& identity, const json& j) {
  auto error = [&](const std::string& id, const std::string& code, const std::string& msg) {
    send(identity, json{{"id", id}, {"event", "error"}, {"code", code}, {"message", msg}});
  };
  std::string id;
  if (j.contains("id")) {
    if (!j["id"].is_string() || j["id"].get<std::string>().empty())
      return error("", "invalid_request", "id must be a non-empty string");
    id = j["id"].get<std::string>();
  } else {
    id = "srv-" + std::to_string(next_id++);
  }
  GenerateParams p;
  auto int_field = [&](const char* key, int64_t& out) {
    if (!j.contains(key)) return true;
    if (!j[key].is_number_integer()) return error(id, "invalid_request", std::string(key) + " must be an integer"), false;
    out = j[key].get<int64_t>();
    return true;
  };
  auto num_field = [&](const char* key, double& out) {
    if (!j.contains(key)) return true;
    if (!j[key].is_number()) return error(id, "invalid_request", std::string(key) + " must be a number"), false;
    out = j[key].get<double>();
    return true;
  };
  int64_t seed = 0;
  if (!int_field("max_new_tokens", p.max_new_tokens) || !int_field("top_k", p.top_k) ||
      !num_field("temperature", p.temperature) || !num_field("top_p", p.top_p) || !int_field("seed", seed))
    return;
  p.seed = static_cast<uint64_t>(seed);
  if (j.contains("tokens")) {
    if (!j["tokens"].is_array()) return error(id, "invalid_request", "tokens must be an array of integers");
    for (const auto& t : j["tokens"]) {
      if (!t.is_number_integer()) return error(id, "invalid_request", "tokens must be an array of integers");
      p.prompt_tokens.push_back(t.get<int64_t>());
    }
  } else if (j.contains("prompt")) {
    if (!j["prompt"].is_string()) return error(id, "invalid_request", "prompt must be a string");
    if (!opt.encode) return error(id, "invalid_request", "this server has no tokenizer: send \"tokens\"");
    p.prompt_tokens = opt.encode(j["prompt"].get<std::string>());
  } else {
    return error(id, "invalid_request", "generate needs \"prompt\" or \"tokens\"");
  }
  if (j.contains("stop")) {
    if (!j["stop"].is_array()) return error(id, "invalid_request", "stop must be an array of strings");
    for (const auto& s : j["stop"]) {
      if (!s.is_string()) return error(id, "invalid_request", "stop must be an array of strings");
      p.stop.push_back(s.get<std::string>());
    }
  }
  if (!j.contains("eos")) p.eos_ids = opt.default_eos;
  if (j.contains("eos")) {
    if (!j["eos"].is_array()) return error(id, "invalid_request", "eos must be an array of integers");
    for (const auto& t : j["eos"]) {
      if (!t.is_number_integer()) return error(id, "invalid_request", "eos must be an array of integers");
      p.eos_ids.push_back(t.get<int64_t>());
    }
  }
  if (j.contains("domain")) {
    if (!j["domain"].is_string()) return error(id, "invalid_request", "domain must be a string");
    p.domain = j["domain"].get<std::string>();
  }
  if (j.contains("stream")) {
    if (!j["stream"].is_boolean()) return error(id, "invalid_request", "stream must be true or false");
    p.stream = j["stream"].get<bool>();
  }
  const std::string internal = hex(identity) + "/" + id;
  if (routes.count(internal)) return error(id, "duplicate_id", "a request with id '" + id + "' is in flight");
  routes[internal] = Route{identity, id};
  by_peer[identity].insert(internal);
  p.id = internal;
  // Callbacks run on the runtime's client thread, one at a time: `push` and `carry` are theirs.
  auto carry = std::make_shared<std::string>();
  auto ch = channel;
  const int64_t retry = opt.retry_after_ms;
  rt->submit(
      std::move(p),
      [ch, carry](const TokenChunk& c) {
        *carry += c.text;
        const size_t ready = utf8_complete_prefix(*carry);
        json t{{"event", "token"}, {"tokens", c.tokens}, {"text", carry->substr(0, ready)}};
        carry->erase(0, ready);
        ch->send(c.id, "0" + dump(t));
      },
      [ch, retry](const GenerateResult& r) {
        json d;
        if (r.finish == "error") {
          d = {{"event", "error"}, {"code", r.error_code}, {"message", r.error_message}};
          if (r.error_code == "busy") d["retry_after_ms"] = retry;
        } else {
          d = {{"event", "done"}, {"text", r.text}, {"tokens", r.tokens}, {"finish_reason", r.finish},
               {"stats", {{"num_drafts", r.num_drafts}, {"num_draft_tokens", r.num_draft_tokens},
                          {"num_accepted_tokens", r.num_accepted_tokens},
                          {"accepted_per_position", r.accepted_per_position},
                          {"ttft_ms", r.ttft_ms}, {"total_ms", r.total_ms}}}};
          if (!r.route.empty()) d["route"] = r.route;
        }
        ch->send(r.id, "1" + dump(d));
      });
}

void ZmqServer::Impl::handle(const std::string& identity, const std::string& frame) {
  auto error = [&](const std::string& code, const std::string& msg) {
    send(identity, json{{"id", nullptr}, {"event", "error"}, {"code", code}, {"message", msg}});
  };
  if (frame.size() > opt.max_frame_bytes)
    return error("frame_too_large", "frame of " + std::to_string(frame.size()) + " bytes exceeds " +
                                        std::to_string(opt.max_frame_bytes));
  json j;
  try {
    j = json::parse(frame);
  } catch (const json::exception& e) {
    return error("malformed_json", e.what());
  }
  if (!j.is_object()) return error("invalid_request", "a request is one JSON object");
  if (!j.contains("op") || !j["op"].is_string()) return error("invalid_request", "missing string field \"op\"");
  const auto op = j["op"].get<std::string>();
  if (op == "generate") return generate(identity, j);
  if (op == "cancel") {
    if (!j.contains("id") || !j["id"].is_string()) return error("invalid_request", "cancel needs a string \"id\"");
    const std::string id = j["id"].get<std::string>();
    const std::string internal = hex(identity) + "/" + id;
    if (!routes.count(internal))
      return send(identity, json{{"id", id}, {"event", "error"}, {"code", "unknown_id"},
                                 {"message", "no request '" + id + "' in flight for this client"}});
    rt->cancel(internal);
    return send(identity, json{{"id", id}, {"event", "cancel_ack"}});
  }
  if (op == "stats") return send(identity, json{{"event", "stats"}, {"stats", json::parse(rt->stats_json())}});
  if (op == "health")
    return send(identity, json{{"event", "health"}, {"status", "ok"}, {"in_flight", routes.size()}});
  error("unknown_op", "unknown op '" + op + "' (generate, cancel, stats, health)");
}

void ZmqServer::Impl::loop() {
  zmq::pollitem_t items[] = {{router.handle(), 0, ZMQ_POLLIN, 0},
                             {pull.handle(), 0, ZMQ_POLLIN, 0},
                             {http.handle(), 0, ZMQ_POLLIN, 0}};
  const int n_items = metrics_bound.empty() ? 2 : 3;
  while (running) {
    zmq::poll(items, n_items, std::chrono::milliseconds(50));
    if (n_items == 3 && (items[2].revents & ZMQ_POLLIN)) {
      try {
        serve_http();
      } catch (const std::exception&) {
      }
    }
    if (items[1].revents & ZMQ_POLLIN) {
      for (int i = 0; i < 256; ++i) {
        std::vector<zmq::message_t> parts;
        if (!zmq::recv_multipart(pull, std::back_inserter(parts), zmq::recv_flags::dontwait)) break;
        if (parts.size() != 2 || parts[1].size() < 1) continue;
        std::string payload = parts[1].to_string();
        deliver(parts[0].to_string(), payload.substr(1), payload[0] == '1');
      }
    }
    if (items[0].revents & ZMQ_POLLIN) {
      for (int i = 0; i < 256; ++i) {
        std::vector<zmq::message_t> parts;
        if (!zmq::recv_multipart(router, std::back_inserter(parts), zmq::recv_flags::dontwait)) break;
        if (parts.empty()) continue;
        const std::string identity = parts[0].to_string();
        if (parts.size() != 2) {
          send(identity, json{{"id", nullptr}, {"event", "error"}, {"code", "multipart"},
                              {"message", "send exactly one frame holding one JSON object (got " +
                                              std::to_string(parts.size() - 1) + " frames)"}});
          continue;
        }
        try {
          handle(identity, parts[1].to_string());
        } catch (const std::exception& e) {
          send(identity, json{{"id", nullptr}, {"event", "error"}, {"code", "internal"}, {"message", e.what()}});
        }
      }
    }
  }
}

ZmqServer::ZmqServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

std::unique_ptr<ZmqServer> ZmqServer::start(Runtime& rt, ZmqServerOptions opt, std::string* error) {
  auto impl = std::make_unique<Impl>();
  impl->rt = &rt;
  impl->opt = opt;
  try {
    impl->router.set(zmq::sockopt::router_mandatory, 1);
    impl->router.set(zmq::sockopt::maxmsgsize, static_cast<int64_t>(opt.max_frame_bytes) * 16);
    impl->router.set(zmq::sockopt::linger, 0);
    impl->pull.set(zmq::sockopt::linger, 0);
    impl->router.bind(opt.endpoint);
    impl->bound = impl->router.get(zmq::sockopt::last_endpoint);
    const std::string inproc = "inproc://osd-replies-" + std::to_string(reinterpret_cast<uintptr_t>(impl.get()));
    impl->pull.bind(inproc);
    if (!opt.metrics_endpoint.empty()) {
      impl->http.set(zmq::sockopt::linger, 0);
      impl->http.bind(opt.metrics_endpoint);
      impl->metrics_bound = impl->http.get(zmq::sockopt::last_endpoint);
    }
    impl->channel->push.set(zmq::sockopt::linger, 0);
    impl->channel->push.set(zmq::sockopt::sndhwm, 0);
    impl->pull.set(zmq::sockopt::rcvhwm, 0);
    impl->channel->push.connect(inproc);
  } catch (const zmq::error_t& e) {
    if (error) *error = "cannot bind " + opt.endpoint + ": " + e.what();
    return nullptr;
  }
  auto* raw = impl.get();
  impl->thread = std::thread([raw] { raw->loop(); });
  return std::unique_ptr<ZmqServer>(new ZmqServer(std::move(impl)));
}

std::string ZmqServer::endpoint() const { return impl_->bound; }
std::string ZmqServer::metrics_endpoint() const { return impl_->metrics_bound; }

void ZmqServer::stop() {
  impl_->channel->open = false;
  if (!impl_->running.exchange(false)) return;
  if (impl_->thread.joinable()) impl_->thread.join();
}

ZmqServer::~ZmqServer() { stop(); }

}  // namespace osd
