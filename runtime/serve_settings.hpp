#pragma once
// What osd-serve runs with: one field per option of runtime/config_schema.cpp. The defaults
// are the embedding API's (RuntimeOptions, ZmqServerOptions, HttpServerOptions), read from default-constructed
// ones, so the server, conf/osd.conf (checked by a test) and a service embedding the runtime
// start from the same values. Only online distillation differs: off for an embedded runtime,
// on for the server.
#include <cstdint>
#include <string>

#include "runtime/http_server.hpp"
#include "runtime/runtime.hpp"
#include "runtime/zmq_server.hpp"

namespace osd {

namespace serve_defaults {
inline const RuntimeOptions runtime{};
inline const ZmqServerOptions zmq{};
inline const HttpServerOptions http{};
}  // namespace serve_defaults

struct ServeSettings {
  // models
  std::string target = "default";       // "default", a checkpoint folder or a preset (runtime/model_source.hpp)
  std::string draft = "default";        // the same, or "none" for target-only decoding
  std::string device = "cpu";           // cpu | cuda | cuda:N
  std::string draft_device;             // the drafts' device ("" = device): e.g. cuda:1, or cpu
  std::string dtype = "float32";        // float32 | bfloat16 | float16
  int64_t weights_seed = 0;             // seed of the random weights of presets
  std::string routes;                   // "a,b,c": one draft route per query class ("" = one route)
  std::string route_drafts;             // per route, comma-separated model specs ("" = all start from draft)
  std::string tokenizer = "auto";       // auto (the target folder's files; bytes for byte-level models), a path, none
  // speculation
  int64_t k = serve_defaults::runtime.k;
  bool adaptive_k = serve_defaults::runtime.adaptive_k;
  int64_t prefill_chunk = serve_defaults::runtime.prefill_chunk;
  std::string sampling = "coupled";     // coupled | rejection (RuntimeOptions::sampling; a test checks they agree)
  int64_t k_max = serve_defaults::runtime.k_max;
  int64_t groups = serve_defaults::runtime.groups;
  // limits
  int64_t max_batch = serve_defaults::runtime.max_batch;
  int64_t max_len = serve_defaults::runtime.max_len;
  bool warm_attention_plans = serve_defaults::runtime.warm_attention_plans;
  int64_t max_in_flight = serve_defaults::runtime.max_in_flight;
  int64_t max_new_tokens = serve_defaults::runtime.max_new_tokens_limit;
  int64_t max_frame_bytes = static_cast<int64_t>(serve_defaults::zmq.max_frame_bytes);
  int64_t max_id_bytes = serve_defaults::runtime.max_id_bytes;
  // slow and hostile clients, draining, supervision (docs/OPERATIONS.md)
  int64_t max_clients = serve_defaults::zmq.max_clients;
  int64_t client_send_hwm = serve_defaults::zmq.client_send_hwm;
  int64_t heartbeat_ms = serve_defaults::zmq.heartbeat_ms;
  int64_t max_metrics_connections = serve_defaults::zmq.max_metrics_connections;
  int64_t metrics_idle_ms = serve_defaults::zmq.metrics_idle_ms;
  int64_t max_pending_stats = serve_defaults::zmq.max_pending_stats;
  int64_t drain_timeout_ms = 30000;
  int64_t max_restarts = serve_defaults::runtime.max_restarts;
  // endpoints and threads
  std::string endpoint = serve_defaults::zmq.endpoint;
  std::string metrics_endpoint = serve_defaults::zmq.metrics_endpoint;  // "" = off
  int64_t torch_threads = 0;            // 0: number of cores
  int64_t scheduler_threads = serve_defaults::runtime.threads;  // CAF's scheduler.max-threads (0: cores)
  std::string scheduler_policy = serve_defaults::runtime.scheduler;  // CAF's scheduler.policy
  // the OpenAI-compatible HTTP front end (docs/HTTP.md)
  std::string http;                     // "" = off, else HOST:PORT (e.g. 127.0.0.1:8000; port 0: a free one)
  int64_t http_max_body_bytes = static_cast<int64_t>(serve_defaults::http.max_body_bytes);
  int64_t http_threads = serve_defaults::http.threads;
  int64_t http_timeout_s = serve_defaults::http.io_timeout_s;
  std::string served_model_name;        // "" = the target's name (its folder's, "default", a preset's)
  std::string chat_template = "auto";   // auto | plain | none | a Jinja file (models/text/chat_prompt.hpp)
  // online distillation: the runtime's own options and defaults, switched on for serving
  OnlineOptions online = [] {
    OnlineOptions o = serve_defaults::runtime.online;
    o.enabled = true;
    return o;
  }();
};

// "HOST:PORT" (IPv6 hosts in brackets) -> host and port in [0, 65535]; "" and *error otherwise.
bool parse_host_port(const std::string& address, std::string* host, int* port, std::string* error);

}  // namespace osd
