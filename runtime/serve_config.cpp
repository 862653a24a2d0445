#include "runtime/serve_config.hpp"

#include <caf/all.hpp>
#include <fstream>
#include <iostream>
#include <set>

#include "models/distillation/losses.hpp"

namespace osd {

ServeConfig::ServeConfig() {
  auto& d = defaults_;
  opt_group{custom_options_, "osd"}
      .add(d.target, "target", "target model: default, an HF checkpoint folder, or a preset name")
      .add(d.draft, "draft",
           "draft model: default, an HF checkpoint folder, a preset name, or none")
      .add(d.device, "device",
           "device of the target (and of the drafts unless draft-device): cpu, cuda or cuda:N")
      .add(d.draft_device, "draft-device",
           "device of the drafts and their distillers (empty: device)")
      .add(d.dtype, "dtype", "weights and compute dtype: float32, bfloat16 or float16")
      .add(d.weights_seed, "weights-seed", "seed of the random weights of presets")
      .add(d.routes, "routes",
           "draft routes, comma-separated names (requests pick one with their domain field)")
      .add(d.route_drafts, "route-drafts",
           "per route, comma-separated model specs; empty: every route starts from draft")
      .add(d.tokenizer, "tokenizer",
           "auto (the target folder's tokenizer files), a tokenizer.json / .model / folder, bytes, "
           "or none")
      .add(d.k, "k", "draft tokens per round when adaptive-k is off (0..64)")
      .add(d.adaptive_k, "adaptive-k",
           "k per sequence and round by the goodput planner (0 included), from measured round "
           "costs and each sequence's acceptance; false: always k")
      .add(d.k_max, "k-max", "upper bound of adaptive k (0..64)")
      .add(d.groups, "groups",
           "rounds of a route in flight at once (2 overlaps drafting with verification)")
      .add(d.prefill_chunk, "prefill-chunk",
           "prompt tokens prefilled between two rounds (0: whole prompts at once)")
      .add(d.sampling, "sampling",
           "how sampled requests are drawn unless they say: coupled (a seed gives the text "
           "target-only sampling gives) or rejection (the p/q rule: more accepted tokens)")
      .add(d.max_batch, "max-batch", "sequences in flight on the verifier (KV cache slots)")
      .add(d.max_len, "max-len", "KV cache positions per sequence (the context limit)")
      .add(d.warm_attention_plans, "warm-attention-plans",
           "CUDA: each serving actor builds its attention plans for every prompt length before "
           "serving (~1-2 s at start) instead of on the first request of each length")
      .add(d.max_in_flight, "max-in-flight",
           "admitted unfinished requests; beyond it clients get busy")
      .add(d.max_new_tokens, "max-new-tokens",
           "largest max_new_tokens a request may ask for (prompt + max_new_tokens must also fit max-len)")
      .add(d.max_frame_bytes, "max-frame-bytes", "largest request frame accepted")
      .add(d.max_id_bytes, "max-id-bytes", "longest request id accepted")
      .add(d.max_clients, "max-clients",
           "clients with requests in flight at once; a new one beyond gets too_many_clients")
      .add(d.client_send_hwm, "client-send-hwm",
           "replies queued for one client; a client leaving more unread is dropped (requests cancelled)")
      .add(d.heartbeat_ms, "heartbeat-ms",
           "ZMTP heartbeat interval; a silent dead connection closes after 3 (0 = off)")
      .add(d.max_metrics_connections, "max-metrics-connections",
           "open GET /metrics connections; more are closed at once")
      .add(d.metrics_idle_ms, "metrics-idle-ms",
           "a metrics connection without a whole request is closed after this many ms")
      .add(d.max_pending_stats, "max-pending-stats",
           "stats and metrics answers queued at once; more get busy (HTTP 503)")
      .add(d.drain_timeout_ms, "drain-timeout-ms",
           "on SIGTERM/SIGINT, requests in flight may finish for this long, then are cancelled")
      .add(d.max_restarts, "max-restarts",
           "restarts of a route's buffer or distiller that died before its route serves on without it")
      .add(d.endpoint, "endpoint", "ZeroMQ ROUTER endpoint clients connect to")
      .add(d.metrics_endpoint, "metrics-endpoint",
           "Prometheus GET /metrics endpoint (tcp://host:port), empty = off")
      .add(d.http, "http",
           "OpenAI-compatible HTTP front end on HOST:PORT (e.g. 127.0.0.1:8000), empty = off")
      .add(d.http_max_body_bytes, "http-max-body-bytes", "largest HTTP request body (413 above)")
      .add(d.http_threads, "http-threads",
           "HTTP connections served at once (each open connection holds a thread)")
      .add(d.http_timeout_s, "http-timeout-s",
           "an HTTP client that stalls this long while sending or reading is disconnected")
      .add(d.served_model_name, "served-model-name",
           "the model name HTTP clients send (empty: the target's name)")
      .add(d.chat_template, "chat-template",
           "chat template of /v1/chat/completions: auto (the checkpoint's, else plain), plain, none, "
           "or a Jinja file")
      .add(d.torch_threads, "torch-threads", "libtorch intra-op threads, 0 = number of cores")
      .add(d.online.enabled, "online",
           "distil the draft online from the target's verified distributions")
      .add(d.online.loss, "online-loss", "distillation loss: fkl, rkl, jsd or tvd")
      .add(d.online.lr, "online-lr", "distiller learning rate (AdamW)")
      .add(d.online.warmup_steps, "online-warmup", "distiller warm-up steps")
      .add(d.online.batch, "online-batch", "records per distiller gradient step")
      .add(d.online.steps_per_update, "online-steps-per-update",
           "gradient steps per guarded update")
      .add(d.online.min_new_records, "online-min-new-records", "new records that trigger an update")
      .add(d.online.update_every_ms, "online-update-every-ms",
           "also update after this many ms once any record is new (0 = off)")
      .add(d.online.record_all_positions, "online-record-all",
           "buffer every verified position (false: first rejection only)")
      .add(d.online.record_prompt_positions, "online-record-prompt",
           "also buffer the target's distributions at the last N prompt positions (0 = none)")
      .add(d.online.record_plain_every, "online-record-plain-every",
           "a sequence at k = 0 records its next token's distribution every N tokens (0: never)")
      .add(d.online.record_top_k, "online-top-k",
           "target log-probs kept per record (0: full distribution)")
      .add(d.online.buffer_bytes, "online-buffer-bytes", "distillation buffer budget in bytes")
      .add(d.online.guard_margin, "online-guard-margin",
           "publish unless held-out acceptance drops by more")
      .add(d.online.rollback_margin, "online-rollback-margin",
           "roll back when held-out acceptance drops by more")
      .add(d.online.guard_z, "online-guard-z",
           "a publish needs a held-out gain this many standard errors clear of zero (0 = off)")
      .add(d.online.sequential_guard, "online-sequential-guard",
           "the sequential guard instead of online-min-heldout and online-guard-z: decides from 3 "
           "held-out requests on, false-publish rate at most online-guard-alpha")
      .add(d.online.guard_alpha, "online-guard-alpha",
           "the sequential guard's false-publish rate between two publishes")
      .add(d.online.max_duty, "online-max-duty",
           "each distiller's busy share of wall time (1 = no cap)")
      .add(d.online.distiller_multiprocessors, "online-distiller-multiprocessors",
           "CUDA: GPU multiprocessors the distillers train on (0 = all)")
      .add(d.online.held_backoff, "online-held-backoff",
           "held updates in a row that each double a route's wait for new records (0-4)")
      .add(d.online.backoff_duty, "online-backoff-duty",
           "a backed-off route also trains at most 1/back-off of the time")
      .add(d.online.replay_requests, "online-replay-requests",
           "replay whole requests, whose records share one forward (false: record by record)")
      .add(d.online.autocast, "online-autocast",
           "CUDA: the distillers' forwards run in bf16 autocast (false: float32)")
      .add(d.online.serve_beside_distillers, "online-serve-beside-distillers",
           "CUDA: verify and draft on the multiprocessors the distillers do not train on")
      .add(d.online.min_heldout, "online-min-heldout",
           "held-out records a route needs before an update can be published")
      .add(d.online.heldout_records, "online-heldout-records",
           "held-out records per route the guard evaluates on")
      .add(d.online.state_dir, "online-state-dir",
           "save and restore the learned draft here (empty = off)")
      .add(d.online.save_every, "online-save-every",
           "published updates between saves (1: every publish is saved before it serves)");
}

bool parse_host_port(const std::string& address, std::string* host, int* port, std::string* error) {
  const auto colon = address.rfind(':');
  const std::string usage = "'" + address + "' is not HOST:PORT (e.g. 127.0.0.1:8000)";
  if (colon == std::string::npos || colon == 0 || colon + 1 == address.size()) return *error = usage, false;
  std::string h = address.substr(0, colon);
  if (h.size() >= 2 && h.front() == '[' && h.back() == ']') h = h.substr(1, h.size() - 2);
  const std::string p = address.substr(colon + 1);
  if (h.empty() || p.size() > 5 || p.find_first_not_of("0123456789") != std::string::npos)
    return *error = usage, false;
  const int n = std::stoi(p);
  if (n > 65535) return *error = usage + ": the port must be in [0, 65535]", false;
  *host = h;
  *port = n;
  return true;
}

std::vector<std::string> ServeConfig::osd_keys() const {
  std::vector<std::string> keys;
  for (const auto& opt : custom_options_)
    if (opt.category() == "osd") keys.emplace_back(opt.long_name().data(), opt.long_name().size());
  return keys;
}

std::string ServeConfig::load(int argc, char** argv, ServeSettings& out, bool& help_printed) {
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "-h" || a == "--help" || a == "-?") {
      std::cout << "osd-serve: serve speculative decoding over ZeroMQ.\n\n"
                << "Every key can be given on the command line (--osd.k=6) or in a config file\n"
                << "(--config-file=PATH; default conf/osd.conf when it exists), group `osd { ... }`.\n\n"
                << "osd keys [default]:\n";
      for (const auto& opt : custom_options_) {
        if (opt.category() != "osd") continue;
        auto def = opt.get();
        const auto name = opt.long_name(), desc = opt.description();
        std::cout << "  osd." << std::string(name.data(), name.size()) << " ["
                  << (def ? caf::to_string(*def) : std::string("?")) << "]\n      "
                  << std::string(desc.data(), desc.size()) << "\n";
      }
      std::cout << "\nCAF's own keys (scheduler.max-threads, logger.*, ...): --long-help\n";
      help_printed = true;
      return "";
    }
  }
  // CAF takes boolean options as bare flags only (--osd.online); osd also accepts
  // --osd.KEY=true|false for them, applied after the file and the other arguments.
  std::vector<std::pair<std::string, bool>> bool_args;
  std::vector<char*> args{argv[0]};
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const auto eq = a.find('=');
    bool taken = false;
    if (a.rfind("--osd.", 0) == 0 && eq != std::string::npos) {
      const std::string key = a.substr(6, eq - 6), value = a.substr(eq + 1);
      for (const auto& opt : custom_options_) {
        if (opt.category() != "osd" || !opt.is_flag() || opt.long_name() != key) continue;
        if (value != "true" && value != "false") return "configuration: osd." + key + " must be true or false";
        bool_args.emplace_back(key, value == "true");
        taken = true;
      }
    }
    if (!taken) args.push_back(argv[i]);
  }
  const char* file = nullptr;
  if (std::ifstream("conf/osd.conf").good()) file = "conf/osd.conf";
  if (auto err = parse(static_cast<int>(args.size()), args.data(), file))
    return "configuration: " + caf::to_string(err);
  for (const auto& [key, value] : bool_args) caf::put(content, "osd." + key, value);
  help_printed = cli_helptext_printed;
  // Unknown keys: in the osd group against the declared options; other groups must be CAF's.
  std::set<std::string> known_groups, osd_keys;
  for (const auto& opt : custom_options_) {
    const auto cat = opt.category(), name = opt.long_name();
    known_groups.insert(std::string(cat.data(), cat.size()));
    if (cat == "global") known_groups.insert(std::string(name.data(), name.size()));  // top-level keys
    if (cat == "osd") osd_keys.insert(std::string(name.data(), name.size()));
  }
  for (const auto& [group, value] : content) {
    if (!known_groups.count(group)) return "configuration: unknown group or key '" + group + "'";
    if (group != "osd") continue;
    if (auto* dict = caf::get_if<caf::settings>(&value)) {
      for (const auto& [key, v] : *dict)
        if (!osd_keys.count(key)) return "configuration: unknown key 'osd." + key + "'";
    }
  }
  out = defaults_;
  std::string error;
  auto str = [&](const char* key, std::string& field) {
    if (auto* v = caf::get_if(&content, std::string("osd.") + key)) {
      if (auto* s = caf::get_if<std::string>(v)) field = *s;
      else error = std::string("osd.") + key + " must be a string";
    }
  };
  auto integer = [&](const char* key, int64_t& field, int64_t lo, int64_t hi) {
    if (auto* v = caf::get_if(&content, std::string("osd.") + key)) {
      if (auto* i = caf::get_if<int64_t>(v)) field = *i;
      else error = std::string("osd.") + key + " must be an integer";
    }
    if (error.empty() && (field < lo || field > hi))
      error = std::string("osd.") + key + " must be in [" + std::to_string(lo) + ", " + std::to_string(hi) +
              "] (got " + std::to_string(field) + ")";
  };
  auto boolean = [&](const char* key, bool& field) {
    if (auto* v = caf::get_if(&content, std::string("osd.") + key)) {
      if (auto* b = caf::get_if<bool>(v)) field = *b;
      else error = std::string("osd.") + key + " must be true or false";
    }
  };
  auto real = [&](const char* key, double& field, double lo, double hi) {
    if (auto* v = caf::get_if(&content, std::string("osd.") + key)) {
      if (auto* x = caf::get_if<double>(v)) field = *x;
      else if (auto* i = caf::get_if<int64_t>(v)) field = static_cast<double>(*i);
      else error = std::string("osd.") + key + " must be a number";
    }
    if (error.empty() && !(field >= lo && field <= hi))
      error = std::string("osd.") + key + " must be in [" + std::to_string(lo) + ", " + std::to_string(hi) + "] (got " +
              std::to_string(field) + ")";
  };
  str("target", out.target);
  str("draft", out.draft);
  str("device", out.device);
  str("draft-device", out.draft_device);
  str("dtype", out.dtype);
  integer("weights-seed", out.weights_seed, 0, INT64_MAX);
  str("routes", out.routes);
  str("route-drafts", out.route_drafts);
  str("tokenizer", out.tokenizer);
  integer("k", out.k, 0, 64);
  boolean("adaptive-k", out.adaptive_k);
  integer("k-max", out.k_max, 0, 64);
  integer("prefill-chunk", out.prefill_chunk, 0, 1 << 20);
  str("sampling", out.sampling);
  integer("groups", out.groups, 1, 16);
  integer("max-batch", out.max_batch, 1, 4096);
  integer("max-len", out.max_len, 2, 1 << 20);
  boolean("warm-attention-plans", out.warm_attention_plans);
  integer("max-in-flight", out.max_in_flight, 1, 1 << 20);
  integer("max-new-tokens", out.max_new_tokens, 1, 1 << 20);
  integer("max-frame-bytes", out.max_frame_bytes, 256, 1 << 30);
  integer("max-id-bytes", out.max_id_bytes, 1, 1 << 16);
  integer("max-clients", out.max_clients, 1, 1 << 20);
  integer("client-send-hwm", out.client_send_hwm, 1, 1 << 24);
  integer("heartbeat-ms", out.heartbeat_ms, 0, 3600000);
  integer("max-metrics-connections", out.max_metrics_connections, 1, 1 << 16);
  integer("metrics-idle-ms", out.metrics_idle_ms, 1, 3600000);
  integer("max-pending-stats", out.max_pending_stats, 1, 1 << 16);
  integer("drain-timeout-ms", out.drain_timeout_ms, 0, int64_t{1} << 40);
  integer("max-restarts", out.max_restarts, 0, 1000);
  str("endpoint", out.endpoint);
  str("metrics-endpoint", out.metrics_endpoint);
  str("http", out.http);
  integer("http-max-body-bytes", out.http_max_body_bytes, 256, int64_t{1} << 30);
  integer("http-threads", out.http_threads, 1, 4096);
  integer("http-timeout-s", out.http_timeout_s, 1, 3600);
  str("served-model-name", out.served_model_name);
  str("chat-template", out.chat_template);
  integer("torch-threads", out.torch_threads, 0, 1024);
  boolean("online", out.online.enabled);
  str("online-loss", out.online.loss);
  real("online-lr", out.online.lr, 1e-9, 1.0);
  integer("online-warmup", out.online.warmup_steps, 0, 1 << 20);
  integer("online-batch", out.online.batch, 1, 1 << 16);
  integer("online-steps-per-update", out.online.steps_per_update, 1, 1 << 16);
  integer("online-min-new-records", out.online.min_new_records, 1, 1 << 20);
  integer("online-update-every-ms", out.online.update_every_ms, 0, int64_t{1} << 40);
  boolean("online-record-all", out.online.record_all_positions);
  integer("online-record-prompt", out.online.record_prompt_positions, 0, 1 << 20);
  integer("online-record-plain-every", out.online.record_plain_every, 0, 1 << 20);
  integer("online-top-k", out.online.record_top_k, 0, 1 << 20);
  integer("online-buffer-bytes", out.online.buffer_bytes, 1024, int64_t{1} << 40);
  real("online-guard-margin", out.online.guard_margin, -1.0, 1.0);
  real("online-rollback-margin", out.online.rollback_margin, 0.0, 1.0);
  real("online-guard-z", out.online.guard_z, 0.0, 10.0);
  boolean("online-sequential-guard", out.online.sequential_guard);
  real("online-guard-alpha", out.online.guard_alpha, 1e-6, 0.5);
  integer("online-heldout-records", out.online.heldout_records, 8, 1 << 20);
  integer("online-min-heldout", out.online.min_heldout, 1, 1 << 20);
  real("online-max-duty", out.online.max_duty, 1e-3, 1.0);
  integer("online-distiller-multiprocessors", out.online.distiller_multiprocessors, 0, 4096);
  boolean("online-serve-beside-distillers", out.online.serve_beside_distillers);
  boolean("online-autocast", out.online.autocast);
  boolean("online-replay-requests", out.online.replay_requests);
  integer("online-held-backoff", out.online.held_backoff, 0, 4);
  boolean("online-backoff-duty", out.online.backoff_duty);
  str("online-state-dir", out.online.state_dir);
  integer("online-save-every", out.online.save_every, 1, 1 << 20);
  if (error.empty() && out.sampling != "coupled" && out.sampling != "rejection")
    error = "osd.sampling must be coupled or rejection (got '" + out.sampling + "')";
  if (std::string host, why; error.empty() && !out.http.empty()) {
    int port = 0;
    if (!parse_host_port(out.http, &host, &port, &why)) error = "osd.http: " + why;
  }
  if (error.empty() && !parse_distill_loss(out.online.loss))
    error = "osd.online-loss must be fkl, rkl, jsd or tvd (got '" + out.online.loss + "')";
  return error.empty() ? "" : "configuration: " + error;
}

}  // namespace osd
