#pragma once
// The ZeroMQ front end: a ROUTER socket that clients in any language talk to with DEALER
// sockets, one JSON object per frame (docs/PROTOCOL.md). It is a client of osd::Runtime: each
// `generate` becomes a Runtime::submit whose callbacks stream JSON replies back.
//
// One thread owns the ROUTER socket. Replies produced on the runtime's client thread reach it
// through an inproc PUSH/PULL pair, so no socket is shared and no lock is taken.
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
  int64_t retry_after_ms = 200;                    // hint sent with "busy"
  // Prometheus text at GET /metrics on this endpoint (e.g. tcp://127.0.0.1:9464); "" = off.
  std::string metrics_endpoint;
  // Prompt text -> token ids; empty: requests must send "tokens".
  std::function<std::vector<int64_t>(const std::string&)> encode;
  // eos ids of a request that sends no "eos" (the tokenizer's end-of-sequence token).
  std::vector<int64_t> default_eos;
};

class ZmqServer {
 public:
  // Binds and starts serving; null + *error on failure (e.g. the address is in use).
  static std::unique_ptr<ZmqServer> start(Runtime& runtime, ZmqServerOptions options, std::string* error);
  ~ZmqServer();
  std::string endpoint() const;          // as bound (with the real port)
  std::string metrics_endpoint() const;  // as bound, "" when off
  void stop();                   // stops receiving; idempotent

 private:
  struct Impl;
  explicit ZmqServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Length of the longest prefix of `s` that does not end inside a UTF-8 sequence.
size_t utf8_complete_prefix(const std::string& s);

}  // namespace osd
