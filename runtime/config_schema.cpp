#include "runtime/config_schema.hpp"

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cmath>
#include <cstdio>
#include <cstdlib>

namespace osd {
namespace {

// A SettingRef getter for one member of ServeSettings (a captureless lambda).
#define OSD_FIELD(member) [](ServeSettings& s) -> SettingRef { return &s.member; }

OptionSpec text(std::string name, std::string section, SettingRef (*field)(ServeSettings&), std::string help,
                std::vector<std::string> choices = {}, std::string (*check)(const std::string&) = nullptr,
                std::string check_accepts = "") {
  OptionSpec o;
  o.name = std::move(name), o.section = std::move(section), o.field = field, o.help = std::move(help);
  o.choices = std::move(choices), o.check = check, o.check_accepts = std::move(check_accepts);
  return o;
}
OptionSpec integer(std::string name, std::string section, SettingRef (*field)(ServeSettings&), int64_t lo,
                   int64_t hi, std::string help) {
  OptionSpec o;
  o.name = std::move(name), o.section = std::move(section), o.field = field, o.help = std::move(help);
  o.int_min = lo, o.int_max = hi;
  return o;
}
OptionSpec real(std::string name, std::string section, SettingRef (*field)(ServeSettings&), double lo, double hi,
                std::string help) {
  OptionSpec o;
  o.name = std::move(name), o.section = std::move(section), o.field = field, o.help = std::move(help);
  o.real_min = lo, o.real_max = hi;
  return o;
}
OptionSpec boolean(std::string name, std::string section, SettingRef (*field)(ServeSettings&), std::string help) {
  OptionSpec o;
  o.name = std::move(name), o.section = std::move(section), o.field = field, o.help = std::move(help);
  return o;
}

// cpu, cuda or cuda:N.
std::string check_device(const std::string& v) {
  if (v == "cpu" || v == "cuda") return "";
  if (v.rfind("cuda:", 0) == 0 && v.size() > 5 && v.size() <= 8 &&
      v.find_first_not_of("0123456789", 5) == std::string::npos)
    return "";
  return "must be cpu, cuda or cuda:N";
}
std::string check_draft_device(const std::string& v) {
  return v.empty() ? "" : check_device(v) + (check_device(v).empty() ? "" : " (or empty: the target's device)");
}
// The short names models/core/config.cpp's parse_dtype also takes.
std::string check_dtype_alias(const std::string& v) {
  for (const char* alias : {"f32", "fp32", "F32", "bf16", "BF16", "f16", "fp16", "half", "F16"})
    if (v == alias) return "";
  return "must be float32, bfloat16 or float16";
}
std::string check_http(const std::string& v) {
  std::string host, why;
  int port = 0;
  if (v.empty() || parse_host_port(v, &host, &port, &why)) return "";
  return why;
}

constexpr int64_t kMax64 = INT64_MAX;
constexpr int64_t kTB = int64_t{1} << 40;

std::vector<OptionSpec> declare_options() {
  const std::string models = "models", spec = "speculation", limits = "limits",
                    clients = "slow and hostile clients, draining, supervision",
                    ends = "endpoints and threads", http = "HTTP (the OpenAI-compatible front end)",
                    online = "online distillation";
  return {
      text("osd.target", models, OSD_FIELD(target),
           "target model: default (the bundled default pair, docs/DEFAULT_MODELS.md), a Hugging Face "
           "checkpoint folder (config.json + model.safetensors), or a preset name with random weights "
           "(tiny, tiny-draft, 10m, 100m, llama-160m, tinyllama-1b)"),
      text("osd.draft", models, OSD_FIELD(draft),
           "draft model: as osd.target, or none for target-only decoding. Its vocabulary must be the "
           "target's: with a target of another vocabulary, pass a matching draft or none"),
      text("osd.device", models, OSD_FIELD(device),
           "device of the target (and of the drafts unless osd.draft-device): cpu, cuda or cuda:N", {},
           check_device, "cpu | cuda | cuda:N"),
      text("osd.draft-device", models, OSD_FIELD(draft_device),
           "device of the drafts and their distillers, e.g. cuda:1 or cpu (empty: osd.device); draft "
           "probabilities move to the target's device for verification",
           {}, check_draft_device, "(empty) | cpu | cuda | cuda:N"),
      text("osd.dtype", models, OSD_FIELD(dtype), "weights and compute dtype",
           {"float32", "bfloat16", "float16"}, check_dtype_alias),
      integer("osd.weights-seed", models, OSD_FIELD(weights_seed), 0, kMax64,
              "seed of the random weights of presets"),
      text("osd.routes", models, OSD_FIELD(routes),
           "draft routes (one draft per query class), comma-separated names, e.g. python,c,english; a "
           "request whose domain names a route goes there, the others are routed automatically (empty: "
           "one route)"),
      text("osd.route-drafts", models, OSD_FIELD(route_drafts),
           "per route, comma-separated model specs as osd.draft (empty: every route starts from osd.draft)"),
      text("osd.tokenizer", models, OSD_FIELD(tokenizer),
           "tokenizer of text prompts and streamed text: auto (the target folder's tokenizer.json, "
           "tokenizer.model or encoder.json + vocab.bpe; bytes for byte-level models), a tokenizer.json, "
           "a .model, a folder, bytes, or none (requests must send token ids)"),

      integer("osd.k", spec, OSD_FIELD(k), 0, 64, "draft tokens per round when osd.adaptive-k is off (0: plain decoding)"),
      boolean("osd.adaptive-k", spec, OSD_FIELD(adaptive_k),
              "k per sequence and round by the goodput planner (0 included), from measured round costs "
              "and each sequence's acceptance; false: always osd.k"),
      integer("osd.k-max", spec, OSD_FIELD(k_max), 0, 64, "upper bound of adaptive k"),
      integer("osd.groups", spec, OSD_FIELD(groups), 1, 16,
              "rounds of a route in flight at once (2 overlaps one round's drafting with another's "
              "verification)"),
      integer("osd.prefill-chunk", spec, OSD_FIELD(prefill_chunk), 0, 1 << 20,
              "prompt tokens prefilled between two rounds, so new requests do not stall running ones "
              "(0: whole prompts at once)"),
      text("osd.sampling", spec, OSD_FIELD(sampling),
           "how sampled requests are drawn unless they say: coupled (a seed gives the text target-only "
           "sampling gives) or rejection (the p/q rule: more draft tokens accepted)",
           {"coupled", "rejection"}),

      integer("osd.max-batch", limits, OSD_FIELD(max_batch), 1, 4096,
              "sequences in flight on the verifier (KV cache slots of each model)"),
      integer("osd.max-len", limits, OSD_FIELD(max_len), 2, 1 << 20,
              "KV cache positions per sequence (the context limit): prompt + generated tokens must fit"),
      boolean("osd.warm-attention-plans", limits, OSD_FIELD(warm_attention_plans),
              "CUDA: each serving actor builds its attention plans for every prompt length before serving "
              "(about 1-2 s at start) instead of on the first request of each length"),
      integer("osd.max-in-flight", limits, OSD_FIELD(max_in_flight), 1, 1 << 20,
              "admitted, unfinished requests; beyond it clients get the error busy with a retry hint"),
      integer("osd.max-new-tokens", limits, OSD_FIELD(max_new_tokens), 1, 1 << 20,
              "largest max_new_tokens a request may ask for; prompt + max_new_tokens must also fit the "
              "context, or the request gets context_length_exceeded"),
      integer("osd.max-frame-bytes", limits, OSD_FIELD(max_frame_bytes), 256, 1 << 30,
              "largest request frame; larger ones get frame_too_large (over 16x this, the connection "
              "is dropped inside ZeroMQ)"),
      integer("osd.max-id-bytes", limits, OSD_FIELD(max_id_bytes), 1, 1 << 16,
              "longest request id; longer ids get invalid_request"),

      integer("osd.max-clients", clients, OSD_FIELD(max_clients), 1, 1 << 20,
              "clients with requests in flight at once; a new one beyond gets too_many_clients"),
      integer("osd.client-send-hwm", clients, OSD_FIELD(client_send_hwm), 1, 1 << 24,
              "replies queued for one client; a client leaving more unread is dropped (its requests "
              "cancelled)"),
      integer("osd.heartbeat-ms", clients, OSD_FIELD(heartbeat_ms), 0, 3600000,
              "ZMTP heartbeat interval; a silent dead connection closes after three (0: off)"),
      integer("osd.max-metrics-connections", clients, OSD_FIELD(max_metrics_connections), 1, 1 << 16,
              "open GET /metrics connections; more are closed at once"),
      integer("osd.metrics-idle-ms", clients, OSD_FIELD(metrics_idle_ms), 1, 3600000,
              "a metrics connection without a whole request is closed after this many ms"),
      integer("osd.max-pending-stats", clients, OSD_FIELD(max_pending_stats), 1, 1 << 16,
              "stats and metrics answers queued at once; more get busy (HTTP 503)"),
      integer("osd.drain-timeout-ms", clients, OSD_FIELD(drain_timeout_ms), 0, kTB,
              "on SIGTERM or SIGINT, requests in flight may finish for this long, then are cancelled "
              "(each gets its final reply); a second signal exits at once"),
      integer("osd.max-restarts", clients, OSD_FIELD(max_restarts), 0, 1000,
              "restarts of a route's buffer or distiller that died, after which its route serves on "
              "with its last draft (health: degraded)"),

      text("osd.endpoint", ends, OSD_FIELD(endpoint), "ZeroMQ ROUTER endpoint clients connect to (DEALER sockets)"),
      text("osd.metrics-endpoint", ends, OSD_FIELD(metrics_endpoint),
           "Prometheus GET /metrics endpoint, e.g. tcp://127.0.0.1:9464 (empty: off)"),
      integer("osd.torch-threads", ends, OSD_FIELD(torch_threads), 0, 1024,
              "libtorch intra-op threads (0: number of cores, or OSD_THREADS)"),
      integer("scheduler.max-threads", ends, OSD_FIELD(scheduler_threads), 0, 1024,
              "CAF scheduler threads running the actors (0: number of cores)"),
      text("scheduler.policy", ends, OSD_FIELD(scheduler_policy),
           "CAF scheduler policy: sharing (a message wakes an idle worker at once) or stealing (CAF's "
           "default, whose idle workers sleep up to 10 ms between polls)",
           {"sharing", "stealing"}),

      text("osd.http", http, OSD_FIELD(http),
           "serve POST /v1/completions, /v1/chat/completions, GET /v1/models, /health and /metrics on "
           "HOST:PORT, e.g. 127.0.0.1:8000 (port 0: a free one; empty: off)",
           {}, check_http, "(empty) | HOST:PORT"),
      integer("osd.http-max-body-bytes", http, OSD_FIELD(http_max_body_bytes), 256, int64_t{1} << 30,
              "largest HTTP request body (413 above)"),
      integer("osd.http-threads", http, OSD_FIELD(http_threads), 1, 4096,
              "HTTP connections served at once (each open connection, keep-alive included, holds a thread)"),
      integer("osd.http-timeout-s", http, OSD_FIELD(http_timeout_s), 1, 3600,
              "an HTTP client that stalls this long while sending or reading is disconnected (its "
              "request cancelled)"),
      text("osd.served-model-name", http, OSD_FIELD(served_model_name),
           "the model name HTTP clients send (empty: the target's name: its folder's, default, a preset's)"),
      text("osd.chat-template", http, OSD_FIELD(chat_template),
           "chat template of /v1/chat/completions: auto (the checkpoint's, else plain), plain (one "
           "\"role: content\" line per message), none (chat refused with 400), or a Jinja file"),

      boolean("osd.online", online, OSD_FIELD(online.enabled),
              "distil the draft online from the target's distributions at verified positions"),
      text("osd.online-loss", online, OSD_FIELD(online.loss),
           "distillation loss: fkl (forward KL), rkl (reverse KL), jsd (JSD(0.5)) or tvd",
           {"fkl", "rkl", "jsd", "tvd"}),
      real("osd.online-lr", online, OSD_FIELD(online.lr), 1e-9, 1.0, "distiller learning rate (AdamW)"),
      integer("osd.online-warmup", online, OSD_FIELD(online.warmup_steps), 0, 1 << 20,
              "distiller linear warm-up steps"),
      integer("osd.online-batch", online, OSD_FIELD(online.batch), 1, 1 << 16, "records per gradient step"),
      integer("osd.online-steps-per-update", online, OSD_FIELD(online.steps_per_update), 1, 1 << 16,
              "gradient steps per guarded update"),
      integer("osd.online-min-new-records", online, OSD_FIELD(online.min_new_records), 1, 1 << 20,
              "new records that start an update"),
      integer("osd.online-update-every-ms", online, OSD_FIELD(online.update_every_ms), 0, kTB,
              "also update after this many ms once any record is new, so low traffic still trains (0: off)"),
      boolean("osd.online-record-all", online, OSD_FIELD(online.record_all_positions),
              "buffer every verified position (false: each round's first rejected position only)"),
      integer("osd.online-record-prompt", online, OSD_FIELD(online.record_prompt_positions), 0, 1 << 20,
              "also buffer the target's distributions at the last N prompt positions (0: none)"),
      integer("osd.online-record-plain-every", online, OSD_FIELD(online.record_plain_every), 0, 1 << 20,
              "a sequence at k = 0 records its next token's distribution every N tokens, so drafts keep "
              "learning while speculation is off (0: never)"),
      integer("osd.online-top-k", online, OSD_FIELD(online.record_top_k), 0, 1 << 20,
              "target log-probs kept per record, top-k + tail mass (0: full distributions)"),
      integer("osd.online-buffer-bytes", online, OSD_FIELD(online.buffer_bytes), 1024, kTB,
              "distillation buffer budget in bytes (oldest records evicted first)"),
      real("osd.online-guard-margin", online, OSD_FIELD(online.guard_margin), -1.0, 1.0,
           "publish an update unless its held-out acceptance drops by more than this (negative: it must "
           "gain that much)"),
      real("osd.online-rollback-margin", online, OSD_FIELD(online.rollback_margin), 0.0, 1.0,
           "roll the trained copy back to the published draft when its held-out acceptance is this much "
           "below it"),
      real("osd.online-guard-z", online, OSD_FIELD(online.guard_z), 0.0, 10.0,
           "a publish also needs its held-out gain this many standard errors clear of zero (0: off)"),
      boolean("osd.online-sequential-guard", online, OSD_FIELD(online.sequential_guard),
              "the sequential guard instead of osd.online-min-heldout and osd.online-guard-z: it decides "
              "from 3 held-out requests on, false-publish rate at most osd.online-guard-alpha"),
      real("osd.online-guard-alpha", online, OSD_FIELD(online.guard_alpha), 1e-6, 0.5,
           "the sequential guard's false-publish rate between two publishes"),
      integer("osd.online-heldout-records", online, OSD_FIELD(online.heldout_records), 8, 1 << 20,
              "held-out records per route the guard evaluates on (every 10th request is held out)"),
      integer("osd.online-min-heldout", online, OSD_FIELD(online.min_heldout), 1, 1 << 20,
              "held-out records a route needs before an update can be published"),
      real("osd.online-max-duty", online, OSD_FIELD(online.max_duty), 1e-3, 1.0,
           "each distiller's busy share of wall time (1: no cap)"),
      integer("osd.online-distiller-multiprocessors", online, OSD_FIELD(online.distiller_multiprocessors), 0,
              4096, "CUDA: GPU multiprocessors the distillers train on, a green context (0: all)"),
      boolean("osd.online-serve-beside-distillers", online, OSD_FIELD(online.serve_beside_distillers),
              "CUDA: verify and draft only on the multiprocessors the distillers do not train on"),
      boolean("osd.online-autocast", online, OSD_FIELD(online.autocast),
              "CUDA: the distillers' forwards run in bf16 autocast (false: float32)"),
      boolean("osd.online-replay-requests", online, OSD_FIELD(online.replay_requests),
              "replay whole requests, whose records share one forward (false: record by record)"),
      integer("osd.online-held-backoff", online, OSD_FIELD(online.held_backoff), 0, 4,
              "held updates in a row that each double a route's wait for new records"),
      boolean("osd.online-backoff-duty", online, OSD_FIELD(online.backoff_duty),
              "a backed-off route also trains at most 1/back-off of the time (false: records only)"),
      text("osd.online-state-dir", online, OSD_FIELD(online.state_dir),
           "save the learned draft (HF format + optimizer + version) and the held-out slices here, "
           "crash-safely, and restore them at start (empty: off)"),
      integer("osd.online-save-every", online, OSD_FIELD(online.save_every), 1, 1 << 20,
              "published updates between saves (1: every update is saved before it serves)"),
  };
}
#undef OSD_FIELD

std::string format_real(double x) {
  char buf[64];
  // The shortest form that reads back as x.
  for (int precision = 1; precision <= 17; ++precision) {
    std::snprintf(buf, sizeof buf, "%.*g", precision, x);
    if (std::strtod(buf, nullptr) == x) break;
  }
  std::string s = buf;
  if (s.find_first_of(".en") == std::string::npos) s += ".0";  // reads as a real, not an integer
  return s;
}

std::string quoted(const std::string& s) { return "'" + s + "'"; }

// Levenshtein distance: single-character inserts, deletions and substitutions.
size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

}  // namespace

const char* option_type_name(OptionType t) {
  switch (t) {
    case OptionType::text: return "text";
    case OptionType::integer: return "integer";
    case OptionType::real: return "real";
    case OptionType::boolean: return "boolean";
  }
  return "?";
}

const std::vector<OptionSpec>& serve_options() {
  static const std::vector<OptionSpec> options = declare_options();
  return options;
}

OptionType OptionSpec::type() const {
  ServeSettings probe;
  switch (field(probe).index()) {
    case 0: return OptionType::text;
    case 1: return OptionType::integer;
    case 2: return OptionType::real;
    default: return OptionType::boolean;
  }
}

std::string OptionSpec::group() const { return name.substr(0, name.find('.')); }
std::string OptionSpec::key() const { return name.substr(name.find('.') + 1); }

std::string OptionSpec::accepted() const {
  switch (type()) {
    case OptionType::integer:
      return "[" + std::to_string(int_min) + ", " + std::to_string(int_max) + "]";
    case OptionType::real: return "[" + format_real(real_min) + ", " + format_real(real_max) + "]";
    case OptionType::boolean: return "true | false";
    case OptionType::text: {
      if (choices.empty()) return check_accepts;
      std::string out;
      for (const auto& c : choices) out += (out.empty() ? "" : " | ") + c;
      return out;
    }
  }
  return "";
}

const OptionSpec* find_option(const std::string& name) {
  for (const auto& o : serve_options())
    if (o.name == name) return &o;
  return nullptr;
}

std::string nearest_option_name(const std::string& name) {
  std::string best;
  size_t best_distance = SIZE_MAX;
  for (const auto& o : serve_options()) {
    // A name given without its group ("k", "osd.k" for "k") is compared without it too.
    const size_t d = std::min(edit_distance(name, o.name), edit_distance(name, o.key()));
    if (d < best_distance) best_distance = d, best = o.name;
  }
  if (name.empty()) return "";
  // Short names are close to many: one edit for up to 3 characters, then about a third.
  const size_t allowed = name.size() <= 3 ? 1 : std::max<size_t>(2, name.size() / 3);
  return best_distance <= allowed ? best : "";
}

std::string option_value_text(const OptionSpec& option, const ServeSettings& s) {
  const auto ref = option.field(const_cast<ServeSettings&>(s));
  if (auto* t = std::get_if<std::string*>(&ref)) return **t;
  if (auto* i = std::get_if<int64_t*>(&ref)) return std::to_string(**i);
  if (auto* r = std::get_if<double*>(&ref)) return format_real(**r);
  return *std::get<bool*>(ref) ? "true" : "false";
}

std::string option_default_text(const OptionSpec& option) {
  static const ServeSettings defaults;
  return option_value_text(option, defaults);
}

std::string set_option(const OptionSpec& option, const std::string& value, ServeSettings& out) {
  const std::string fail = option.name + " must be ";
  const auto ref = option.field(out);
  if (auto* i = std::get_if<int64_t*>(&ref)) {
    const std::string range = "an integer in " + option.accepted();
    errno = 0;
    char* end = nullptr;
    const long long n = value.empty() ? 0 : std::strtoll(value.c_str(), &end, 10);
    if (value.empty() || *end != '\0' || errno == ERANGE) return fail + range + " (got " + quoted(value) + ")";
    if (n < option.int_min || n > option.int_max) return fail + "in " + option.accepted() + " (got " + value + ")";
    **i = n;
    return "";
  }
  if (auto* r = std::get_if<double*>(&ref)) {
    const std::string range = "a number in " + option.accepted();
    char* end = nullptr;
    const double x = value.empty() ? 0 : std::strtod(value.c_str(), &end);
    if (value.empty() || *end != '\0' || !std::isfinite(x)) return fail + range + " (got " + quoted(value) + ")";
    if (!(x >= option.real_min && x <= option.real_max)) return fail + "in " + option.accepted() + " (got " + value + ")";
    **r = x;
    return "";
  }
  if (auto* b = std::get_if<bool*>(&ref)) {
    if (value != "true" && value != "false") return fail + "true or false (got " + quoted(value) + ")";
    **b = value == "true";
    return "";
  }
  auto& t = *std::get<std::string*>(ref);
  if (!option.choices.empty() &&
      std::find(option.choices.begin(), option.choices.end(), value) == option.choices.end() &&
      !(option.check && option.check(value).empty()))
    return fail + "one of " + option.accepted() + " (got " + quoted(value) + ")";
  if (option.choices.empty() && option.check) {
    if (auto why = option.check(value); !why.empty()) {
      // check_http's answer is a sentence of its own; the others complete "NAME ...".
      return why.rfind("must", 0) == 0 ? option.name + " " + why + " (got " + quoted(value) + ")"
                                       : option.name + ": " + why;
    }
  }
  t = value;
  return "";
}

}  // namespace osd
