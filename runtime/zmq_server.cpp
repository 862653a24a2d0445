#include "runtime/zmq_server.hpp"

#include <atomic>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>
#include <unordered_map>
#include <zmq.hpp>
#include <zmq_addon.hpp>

#include "models/common/log.hpp"
#include "runtime/background_worker.hpp"
#include "runtime/prometheus.hpp"
#include "runtime/request_parser.hpp"
#include "runtime/runtime.hpp"

namespace osd {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

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

// What a reply through the channel is for (its first frame: the kind, then the target).
enum class ReplyKind : char {
  request = 'R',  // an event of a request: target = the internal id; payload "0" or "1" (final) + JSON
  client = 'S',   // a reply to a client (stats): target = its identity
  http = 'H',     // a whole HTTP response: target = the metrics connection
};

constexpr size_t kMaxHttpRequestBytes = 8192;

std::string http_response(const std::string& status, const std::string& body) {
  return "HTTP/1.0 " + status + "\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: " +
         std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" + body;
}

}  // namespace

// The reply path shared with the runtime's callbacks and the stats worker: it outlives the
// server if requests finish after stop(); replies are then dropped. Several threads send, so a
// mutex guards the socket.
struct ReplyChannel {
  zmq::context_t ctx{1};
  zmq::socket_t push{ctx, zmq::socket_type::push};
  std::mutex mu;
  std::atomic<bool> open{true};
  void send(ReplyKind kind, const std::string& target, const std::string& payload) {
    if (!open) return;
    std::lock_guard<std::mutex> g(mu);
    if (!open) return;
    std::string head(1, static_cast<char>(kind));
    head += target;
    // Unbounded queue (hwm 0): replies are bounded by the requests in flight; never blocks.
    push.send(zmq::buffer(head), zmq::send_flags::sndmore | zmq::send_flags::dontwait);
    push.send(zmq::buffer(payload), zmq::send_flags::dontwait);
  }
};

struct ZmqServer::Impl {
  Runtime* rt = nullptr;
  ZmqServerOptions opt;
  RequestParserOptions parser;
  std::shared_ptr<ReplyChannel> channel = std::make_shared<ReplyChannel>();
  zmq::socket_t router{channel->ctx, zmq::socket_type::router};
  zmq::socket_t pull{channel->ctx, zmq::socket_type::pull};
  zmq::socket_t http{channel->ctx, zmq::socket_type::stream};  // raw TCP: GET /metrics
  std::string metrics_bound;
  std::string bound;
  std::atomic<bool> running{true}, draining{false};
  std::atomic<bool> alive{true};     // the I/O thread runs (false once it stopped, for any reason)
  std::atomic<bool> stopped{false};  // stop() was called
  std::atomic<int64_t> in_flight{0};
  mutable std::mutex failure_mu;
  std::string failure;
  std::unique_ptr<BackgroundWorker> worker;  // stats and metrics answers
  std::thread thread;
  // Counters for the stats reply (written by the I/O thread).
  std::atomic<int64_t> clients_dropped{0}, clients_disconnected{0}, clients_refused{0}, metrics_closed_idle{0},
      metrics_refused{0}, stats_refused{0};

  // Owned by the I/O thread:
  struct Peer {  // a client with requests in flight
    std::map<std::string, std::string> requests;  // client id -> internal id
    bool dropped = false;  // its replies backed up: discarded until it sends again
  };
  std::unordered_map<std::string, Peer> peers;  // identity -> peer
  struct Route {
    std::string identity, client_id;
  };
  std::unordered_map<std::string, Route> routes;  // internal id -> client
  struct MetricsConnection {
    std::string request;
    Clock::time_point opened = Clock::now();
    bool answering = false;
  };
  std::unordered_map<std::string, MetricsConnection> metrics_connections;  // stream peer -> connection
  uint64_t next_internal = 1, next_client_id = 1;

  enum class Sent { ok, gone, full };
  void loop();
  void poll_once(std::chrono::milliseconds timeout);
  void handle(const std::string& identity, const std::string& frame);
  void generate(const std::string& identity, ParsedRequest& req);
  Sent send_raw(const std::string& identity, const std::string& payload);
  void reply(const std::string& identity, const std::string& payload);
  void reply(const std::string& identity, const json& j) { reply(identity, dump(j)); }
  void lose_peer(const std::string& identity, bool gone);
  void deliver(ReplyKind kind, const std::string& target, const std::string& payload);
  void drain_pull(int max_messages);
  void serve_http();
  void http_close(const std::string& peer);
  void http_answer(const std::string& peer, const std::string& response);
  void sweep_metrics_connections();
  json server_stats() const;
};

ZmqServer::Impl::Sent ZmqServer::Impl::send_raw(const std::string& identity, const std::string& payload) {
  try {
    // ROUTER_MANDATORY: the identity frame fails at once when the peer is gone (EHOSTUNREACH) or
    // its queue is full (EAGAIN, with dontwait); then nothing of the message is queued.
    if (!router.send(zmq::buffer(identity), zmq::send_flags::sndmore | zmq::send_flags::dontwait)) return Sent::full;
    router.send(zmq::buffer(payload), zmq::send_flags::dontwait);
    return Sent::ok;
  } catch (const zmq::error_t& e) {
    if (e.num() == EHOSTUNREACH) return Sent::gone;
    throw;
  }
}

// A client that is gone, or that leaves client_send_hwm replies unread: its requests are
// cancelled (their final replies are discarded).
void ZmqServer::Impl::lose_peer(const std::string& identity, bool gone) {
  auto it = peers.find(identity);
  if (it == peers.end() || it->second.dropped) return;
  it->second.dropped = true;
  for (const auto& [client_id, internal] : it->second.requests) rt->cancel(internal);
  if (gone) {
    ++clients_disconnected;
  } else {
    ++clients_dropped;
    log::warn(log::cat("zmq: a client left ", opt.client_send_hwm,
                       " replies unread (osd.client-send-hwm): its ", it->second.requests.size(),
                       " requests are cancelled and replies to it dropped until it sends again"));
  }
}

void ZmqServer::Impl::reply(const std::string& identity, const std::string& payload) {
  auto it = peers.find(identity);
  if (it != peers.end() && it->second.dropped) return;
  switch (send_raw(identity, payload)) {
    case Sent::ok: return;
    case Sent::gone: return lose_peer(identity, true);
    case Sent::full: return lose_peer(identity, false);
  }
}

void ZmqServer::Impl::deliver(ReplyKind kind, const std::string& target, const std::string& payload) {
  if (kind == ReplyKind::client) return reply(target, payload);
  if (kind == ReplyKind::http) return http_answer(target, payload);
  if (payload.empty()) return;
  auto it = routes.find(target);
  if (it == routes.end()) return;
  const Route route = it->second;
  const bool final = payload[0] == '1';
  json j = json::parse(payload.substr(1));
  j["id"] = route.client_id;
  reply(route.identity, j);
  if (!final) return;
  routes.erase(it);
  --in_flight;
  auto peer = peers.find(route.identity);
  if (peer == peers.end()) return;
  peer->second.requests.erase(route.client_id);
  if (peer->second.requests.empty()) peers.erase(peer);
}

void ZmqServer::Impl::generate(const std::string& identity, ParsedRequest& req) {
  auto error = [&](const std::string& id, const std::string& code, const std::string& msg) {
    json e{{"id", id}, {"event", "error"}, {"code", code}, {"message", msg}};
    if (code == "too_many_clients" || code == "shutting_down") e["retry_after_ms"] = opt.retry_after_ms;
    reply(identity, e);
  };
  const std::string client_id = req.id.empty() ? "srv-" + std::to_string(next_client_id++) : req.id;
  if (draining) return error(client_id, "shutting_down", "the server is stopping; retry on its successor");
  auto peer = peers.find(identity);
  if (peer == peers.end()) {
    if (static_cast<int64_t>(peers.size()) >= opt.max_clients) {
      ++clients_refused;
      return error(client_id, "too_many_clients",
                   std::to_string(opt.max_clients) + " clients have requests in flight (osd.max-clients)");
    }
    peer = peers.emplace(identity, Peer{}).first;
  }
  if (peer->second.requests.count(client_id))
    return error(client_id, "duplicate_id", "a request with id '" + client_id + "' is in flight");
  const std::string internal = "z" + std::to_string(next_internal++);
  peer->second.requests[client_id] = internal;
  routes[internal] = Route{identity, client_id};
  ++in_flight;
  GenerateParams p = std::move(req.params);
  p.id = internal;
  // Callbacks run on the runtime's client thread, one at a time: `carry` is theirs.
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
        ch->send(ReplyKind::request, c.id, "0" + dump(t));
      },
      [ch, retry](const GenerateResult& r) {
        json d;
        if (r.finish == "error") {
          d = {{"event", "error"}, {"code", r.error_code}, {"message", r.error_message}};
          if (r.error_code == "busy" || r.error_code == "unavailable") d["retry_after_ms"] = retry;
        } else {
          d = {{"event", "done"}, {"text", r.text}, {"tokens", r.tokens}, {"finish_reason", r.finish},
               {"stats", {{"num_drafts", r.num_drafts}, {"num_draft_tokens", r.num_draft_tokens},
                          {"num_accepted_tokens", r.num_accepted_tokens},
                          {"accepted_per_position", r.accepted_per_position},
                          {"ttft_ms", r.ttft_ms}, {"total_ms", r.total_ms}}}};
          if (!r.route.empty()) d["route"] = r.route;
        }
        ch->send(ReplyKind::request, r.id, "1" + dump(d));
      });
}

json ZmqServer::Impl::server_stats() const {
  return json{{"requests_in_flight", in_flight.load()},
              {"clients_with_requests", peers.size()},
              {"clients_dropped", clients_dropped.load()},
              {"clients_disconnected", clients_disconnected.load()},
              {"clients_refused", clients_refused.load()},
              {"metrics_connections", metrics_connections.size()},
              {"metrics_closed_idle", metrics_closed_idle.load()},
              {"metrics_refused", metrics_refused.load()},
              {"stats_refused", stats_refused.load()},
              {"draining", draining.load()}};
}

void ZmqServer::Impl::handle(const std::string& identity, const std::string& frame) {
  // A client that sends again reads again: replies to it resume.
  if (auto p = peers.find(identity); p != peers.end()) p->second.dropped = false;
  ParsedRequest req = parse_request(frame, parser);
  switch (req.op) {
    case RequestOp::invalid:
      return reply(identity, json{{"id", req.id_known && !req.id.empty() ? json(req.id) : json(nullptr)},
                                  {"event", "error"},
                                  {"code", req.error_code},
                                  {"message", req.error_message}});
    case RequestOp::generate:
      return generate(identity, req);
    case RequestOp::cancel: {
      auto peer = peers.find(identity);
      std::string internal;
      if (peer != peers.end()) {
        auto it = peer->second.requests.find(req.id);
        if (it != peer->second.requests.end()) internal = it->second;
      }
      if (internal.empty())
        return reply(identity, json{{"id", req.id}, {"event", "error"}, {"code", "unknown_id"},
                                    {"message", "no request '" + req.id + "' in flight for this client"}});
      rt->cancel(internal);
      return reply(identity, json{{"id", req.id}, {"event", "cancel_ack"}});
    }
    case RequestOp::health: {
      json h = json::parse(rt->health_json());  // no actor is asked: cheap
      h["event"] = "health";
      h["in_flight"] = routes.size();
      h["draining"] = draining.load();
      return reply(identity, h);
    }
    case RequestOp::stats: {
      // Computed on the worker: asking the actors can take a while, and the I/O thread never waits.
      auto ch = channel;
      Runtime* runtime = rt;
      json server = server_stats();
      if (!worker->post([ch, runtime, identity, server] {
            try {
              json stats = json::parse(runtime->stats_json());
              stats["server"] = server;
              ch->send(ReplyKind::client, identity, dump(json{{"event", "stats"}, {"stats", stats}}));
            } catch (const std::exception& e) {
              ch->send(ReplyKind::client, identity,
                       dump(json{{"id", nullptr}, {"event", "error"}, {"code", "internal"}, {"message", e.what()}}));
            }
          })) {
        ++stats_refused;
        return reply(identity, json{{"id", nullptr}, {"event", "error"}, {"code", "busy"},
                                    {"message", "too many stats requests at once; retry"},
                                    {"retry_after_ms", opt.retry_after_ms}});
      }
      return;
    }
  }
}

void ZmqServer::Impl::http_close(const std::string& peer) {
  metrics_connections.erase(peer);
  try {
    http.send(zmq::buffer(peer), zmq::send_flags::sndmore | zmq::send_flags::dontwait);
    http.send(zmq::message_t(), zmq::send_flags::dontwait);  // empty frame: close the connection
  } catch (const zmq::error_t&) {
  }
}

void ZmqServer::Impl::http_answer(const std::string& peer, const std::string& response) {
  if (!metrics_connections.count(peer)) return;  // closed meanwhile
  try {
    if (http.send(zmq::buffer(peer), zmq::send_flags::sndmore | zmq::send_flags::dontwait))
      http.send(zmq::buffer(response), zmq::send_flags::dontwait);
  } catch (const zmq::error_t&) {
  }
  http_close(peer);
}

// HTTP/1.0 on a ZMQ_STREAM socket: one request per connection, answered, then closed.
void ZmqServer::Impl::serve_http() {
  for (int i = 0; i < 64; ++i) {
    std::vector<zmq::message_t> parts;
    if (!zmq::recv_multipart(http, std::back_inserter(parts), zmq::recv_flags::dontwait)) return;
    if (parts.size() != 2) continue;
    const std::string peer = parts[0].to_string();
    auto it = metrics_connections.find(peer);
    if (parts[1].size() == 0) {  // a connection opens, or closes
      if (it != metrics_connections.end()) {
        metrics_connections.erase(it);
      } else if (static_cast<int64_t>(metrics_connections.size()) >= opt.max_metrics_connections) {
        ++metrics_refused;
        http_close(peer);
      } else {
        metrics_connections.emplace(peer, MetricsConnection{});
      }
      continue;
    }
    if (it == metrics_connections.end() || it->second.answering) continue;  // refused, or one request only
    auto& conn = it->second;
    conn.request += parts[1].to_string();
    if (conn.request.size() > kMaxHttpRequestBytes) {
      http_answer(peer, http_response("431 Request Header Fields Too Large", "request too large\n"));
      continue;
    }
    if (conn.request.find("\r\n\r\n") == std::string::npos && conn.request.find("\n\n") == std::string::npos)
      continue;  // not whole yet
    conn.answering = true;
    if (conn.request.rfind("GET /metrics", 0) != 0) {
      http_answer(peer, http_response("404 Not Found", "osd serves GET /metrics\n"));
      continue;
    }
    auto ch = channel;
    Runtime* runtime = rt;
    if (!worker->post([ch, runtime, peer] {
          try {
            ch->send(ReplyKind::http, peer,
                     http_response("200 OK", prometheus_text(json::parse(runtime->stats_json()))));
          } catch (const std::exception& e) {
            ch->send(ReplyKind::http, peer, http_response("500 Internal Server Error", std::string(e.what()) + "\n"));
          }
        })) {
      ++stats_refused;
      http_answer(peer, http_response("503 Service Unavailable", "busy; retry\n"));
    }
  }
}

void ZmqServer::Impl::sweep_metrics_connections() {
  const auto now = Clock::now();
  std::vector<std::string> idle;
  for (const auto& [peer, conn] : metrics_connections) {
    const auto age = std::chrono::duration_cast<std::chrono::milliseconds>(now - conn.opened).count();
    // Waiting for the worker counts too, with more patience (stats can take seconds).
    if ((!conn.answering && age > opt.metrics_idle_ms) || age > 60000 + opt.metrics_idle_ms) idle.push_back(peer);
  }
  for (const auto& peer : idle) {
    ++metrics_closed_idle;
    http_close(peer);
  }
}

void ZmqServer::Impl::drain_pull(int max_messages) {
  for (int i = 0; i < max_messages; ++i) {
    std::vector<zmq::message_t> parts;
    if (!zmq::recv_multipart(pull, std::back_inserter(parts), zmq::recv_flags::dontwait)) break;
    if (parts.size() != 2 || parts[0].size() < 1) continue;
    const std::string head = parts[0].to_string();
    deliver(static_cast<ReplyKind>(head[0]), head.substr(1), parts[1].to_string());
  }
}

void ZmqServer::Impl::poll_once(std::chrono::milliseconds timeout) {
  zmq::pollitem_t items[] = {{router.handle(), 0, ZMQ_POLLIN, 0},
                             {pull.handle(), 0, ZMQ_POLLIN, 0},
                             {http.handle(), 0, ZMQ_POLLIN, 0}};
  const int n_items = metrics_bound.empty() ? 2 : 3;
  zmq::poll(items, n_items, timeout);
  if (n_items == 3) {
    if (items[2].revents & ZMQ_POLLIN) serve_http();
    sweep_metrics_connections();
  }
  if (items[1].revents & ZMQ_POLLIN) drain_pull(256);
  if (items[0].revents & ZMQ_POLLIN) {
    for (int i = 0; i < 256; ++i) {
      std::vector<zmq::message_t> parts;
      if (!zmq::recv_multipart(router, std::back_inserter(parts), zmq::recv_flags::dontwait)) break;
      if (parts.empty()) continue;
      const std::string identity = parts[0].to_string();
      if (parts.size() != 2) {
        reply(identity, json{{"id", nullptr}, {"event", "error"}, {"code", "multipart"},
                             {"message", "send exactly one frame holding one JSON object (got " +
                                             std::to_string(parts.size() - 1) + " frames)"}});
        continue;
      }
      try {
        handle(identity, parts[1].to_string());
      } catch (const zmq::error_t&) {
        throw;  // the socket itself failed: the front end stops (ZmqServer::failure)
      } catch (const std::exception& e) {
        reply(identity, json{{"id", nullptr}, {"event", "error"}, {"code", "internal"}, {"message", e.what()}});
      }
    }
  }
}

void ZmqServer::Impl::loop() {
  try {
    while (running) poll_once(std::chrono::milliseconds(50));
    drain_pull(1 << 30);  // the replies produced before stop() go out
  } catch (const std::exception& e) {
    {
      std::lock_guard<std::mutex> g(failure_mu);
      failure = e.what();
    }
    log::error(log::cat("zmq: the front end stopped: ", e.what()));
  }
  alive = false;
}

ZmqServer::ZmqServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

std::unique_ptr<ZmqServer> ZmqServer::start(Runtime& rt, ZmqServerOptions opt, std::string* error) {
  auto impl = std::make_unique<Impl>();
  impl->rt = &rt;
  impl->opt = opt;
  impl->parser.max_frame_bytes = opt.max_frame_bytes;
  impl->parser.max_id_bytes = opt.max_id_bytes;
  impl->parser.encode = opt.encode;
  impl->parser.default_eos = opt.default_eos;
  try {
    impl->router.set(zmq::sockopt::router_mandatory, 1);
    // A frame up to 16x the limit is read and answered "frame_too_large"; a larger one drops the
    // connection inside ZeroMQ before it is buffered.
    impl->router.set(zmq::sockopt::maxmsgsize, static_cast<int64_t>(opt.max_frame_bytes) * 16);
    impl->router.set(zmq::sockopt::sndhwm, static_cast<int>(opt.client_send_hwm));
    impl->router.set(zmq::sockopt::rcvhwm, 1000);
    if (opt.heartbeat_ms > 0) {
      impl->router.set(zmq::sockopt::heartbeat_ivl, static_cast<int>(opt.heartbeat_ms));
      impl->router.set(zmq::sockopt::heartbeat_timeout, static_cast<int>(3 * opt.heartbeat_ms));
    }
    impl->router.set(zmq::sockopt::linger, 0);
    impl->pull.set(zmq::sockopt::linger, 0);
    impl->router.bind(opt.endpoint);
    impl->bound = impl->router.get(zmq::sockopt::last_endpoint);
    const std::string inproc = "inproc://osd-replies-" + std::to_string(reinterpret_cast<uintptr_t>(impl.get()));
    impl->pull.bind(inproc);
    if (!opt.metrics_endpoint.empty()) {
      impl->http.set(zmq::sockopt::linger, 0);
      impl->http.set(zmq::sockopt::maxmsgsize, static_cast<int64_t>(kMaxHttpRequestBytes));
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
  impl->worker = std::make_unique<BackgroundWorker>(static_cast<size_t>(std::max<int64_t>(1, opt.max_pending_stats)));
  auto* raw = impl.get();
  impl->thread = std::thread([raw] { raw->loop(); });
  return std::unique_ptr<ZmqServer>(new ZmqServer(std::move(impl)));
}

std::string ZmqServer::endpoint() const { return impl_->bound; }
std::string ZmqServer::metrics_endpoint() const { return impl_->metrics_bound; }
void ZmqServer::begin_drain() { impl_->draining = true; }
int64_t ZmqServer::in_flight() const { return impl_->in_flight; }

bool ZmqServer::wait_replied(std::chrono::milliseconds timeout) {
  const auto until = Clock::now() + timeout;
  while (impl_->in_flight > 0 && impl_->alive && Clock::now() < until)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  return impl_->in_flight == 0;
}

std::string ZmqServer::failure() const {
  std::lock_guard<std::mutex> g(impl_->failure_mu);
  return impl_->failure;
}

void ZmqServer::stop(std::chrono::milliseconds linger) {
  if (impl_->stopped.exchange(true)) return;
  impl_->running = false;
  if (impl_->thread.joinable()) impl_->thread.join();
  impl_->channel->open = false;
  if (impl_->worker) impl_->worker->stop();
  // Queued replies go out for up to `linger` while the context shuts down.
  try {
    impl_->router.set(zmq::sockopt::linger, static_cast<int>(linger.count()));
    impl_->router.close();
    impl_->http.close();
    impl_->pull.close();
  } catch (const zmq::error_t&) {
  }
}

ZmqServer::~ZmqServer() { stop(std::chrono::milliseconds(0)); }

}  // namespace osd
