#pragma once
// The ZeroMQ front end: a ROUTER socket that clients in any language talk to with DEALER
// sockets, one JSON object per frame (docs/PROTOCOL.md). It is a client of osd::Runtime: each
// `generate` becomes a Runtime::submit whose callbacks stream JSON replies back.
//
// One thread owns the sockets and never blocks: replies go out without waiting (a client whose
// unread replies reach client_send_hwm is dropped: its requests are cancelled), stats and
// metrics answers are computed on a worker thread, and replies produced on the runtime's client
// thread or the worker reach the I/O thread through an inproc PUSH/PULL pair, so no socket is
// shared. Every limit below is a key of osd-serve (docs/OPERATIONS.md).
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace osd {

class Runtime;

struct ZmqServerOptions {
  std::string endpoint = "tcp://127.0.0.1:5555";  // tcp://127.0.0.1:* picks a free port
  size_t max_frame_bytes = 1 << 20;                // larger frames get error "frame_too_large"
  size_t max_id_bytes = 256;                       // longer request ids are refused
  int64_t retry_after_ms = 200;                    // hint sent with "busy"
  // Prometheus text at GET /metrics on this endpoint (e.g. tcp://127.0.0.1:9464); "" = off.
  std::string metrics_endpoint;
  // Prompt text -> token ids; empty: requests must send "tokens".
  std::function<std::vector<int64_t>(const std::string&)> encode;
  // eos ids of a request that sends no "eos" (the tokenizer's end-of-sequence token).
  std::vector<int64_t> default_eos;
  // Clients with requests in flight at once; a new one beyond gets "too_many_clients".
  int64_t max_clients = 1024;
  // Replies ZeroMQ queues for one client (ZMQ_SNDHWM). A client that leaves this many unread is
  // dropped: its requests are cancelled and replies to it discarded until it sends again.
  int64_t client_send_hwm = 1000;
  // ZMTP heartbeats: a connection whose peer stops answering is closed after 3 intervals, and its
  // requests are cancelled at their next reply (0: off).
  int64_t heartbeat_ms = 10000;
  int64_t max_metrics_connections = 64;  // open GET /metrics connections; more are closed at once
  int64_t metrics_idle_ms = 5000;        // a metrics connection without a whole request is closed after this
  int64_t max_pending_stats = 16;        // stats / metrics answers queued for the worker; more: "busy" / 503
};

class ZmqServer {
 public:
  // Binds and starts serving; null + *error on failure (e.g. the address is in use).
  static std::unique_ptr<ZmqServer> start(Runtime& runtime, ZmqServerOptions options, std::string* error);
  ~ZmqServer();
  std::string endpoint() const;          // as bound (with the real port)
  std::string metrics_endpoint() const;  // as bound, "" when off
  // Draining: new `generate` requests get "shutting_down"; cancels, stats, health and the
  // replies of requests in flight go on.
  void begin_drain();
  // Waits until every request this server submitted has had its final reply sent (true), or
  // until `timeout` (false).
  bool wait_replied(std::chrono::milliseconds timeout);
  int64_t in_flight() const;     // requests submitted, final reply not yet sent
  // Why the I/O thread stopped on its own ("" while it runs, or after stop()).
  std::string failure() const;
  // Sends what is queued (waiting up to `linger` for slow peers), then stops; idempotent.
  void stop(std::chrono::milliseconds linger = std::chrono::milliseconds(1000));

 private:
  struct Impl;
  explicit ZmqServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Length of the longest prefix of `s` that does not end inside a UTF-8 sequence.
size_t utf8_complete_prefix(const std::string& s);

}  // namespace osd
