#pragma once
// osd-serve's configuration, through CAF's actor_system_config: every key lives in the group
// `osd` (the CAF runtime's own keys, e.g. scheduler.max-threads, keep their groups), can be set
// in a config file (conf/osd.conf lists each with its default) or on the command line
// (--osd.k=6), and `osd-serve --help` lists them. Unknown keys are errors.
#include <caf/actor_system_config.hpp>

#include <cstdint>
#include <string>
#include <vector>

#include "runtime/runtime.hpp"

namespace osd {

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
  int64_t k = 4;
  bool adaptive_k = true;
  int64_t prefill_chunk = 512;
  std::string sampling = "coupled";  // coupled | rejection
  int64_t k_max = 8;
  int64_t groups = 2;
  // limits
  int64_t max_batch = 32;
  int64_t max_len = 1024;
  bool warm_attention_plans = true;  // CUDA: build attention plans before serving
  int64_t max_in_flight = 256;
  int64_t max_new_tokens = 512;         // below max_len: prompt + max_new_tokens must fit the context
  int64_t max_frame_bytes = 1 << 20;
  int64_t max_id_bytes = 256;
  // slow and hostile clients, draining, supervision (docs/OPERATIONS.md)
  int64_t max_clients = 1024;
  int64_t client_send_hwm = 1000;
  int64_t heartbeat_ms = 10000;
  int64_t max_metrics_connections = 64;
  int64_t metrics_idle_ms = 5000;
  int64_t max_pending_stats = 16;
  int64_t drain_timeout_ms = 30000;
  int64_t max_restarts = 3;
  // endpoints and threads
  std::string endpoint = "tcp://127.0.0.1:5555";
  std::string metrics_endpoint;         // "" = off, e.g. tcp://127.0.0.1:9464
  // the OpenAI-compatible HTTP front end (docs/HTTP.md)
  std::string http;                     // "" = off, else HOST:PORT (e.g. 127.0.0.1:8000; port 0: a free one)
  int64_t http_max_body_bytes = 1 << 20;
  int64_t http_threads = 64;
  int64_t http_timeout_s = 10;
  std::string served_model_name;        // "" = the target's name (its folder's, "default", a preset's)
  std::string chat_template = "auto";   // auto | plain | none | a Jinja file (models/text/chat_prompt.hpp)
  int64_t torch_threads = 0;            // 0: number of cores
  // online distillation: the runtime's own options and defaults, switched on for serving
  OnlineOptions online = [] {
    OnlineOptions o;
    o.enabled = true;
    return o;
  }();
};

// "HOST:PORT" (IPv6 hosts in brackets) -> host and port in [0, 65535]; "" and *error otherwise.
bool parse_host_port(const std::string& address, std::string* host, int* port, std::string* error);

class ServeConfig : public caf::actor_system_config {
 public:
  ServeConfig();
  // Parses the command line and the config file (--config-file, default conf/osd.conf when it
  // exists). Returns "" and fills `out`, or what is wrong. `help_printed` is set after --help.
  std::string load(int argc, char** argv, ServeSettings& out, bool& help_printed);
  // Every declared key of the osd group (without the "osd." prefix).
  std::vector<std::string> osd_keys() const;

 private:
  ServeSettings defaults_;
};

}  // namespace osd
