#include "runtime/serve_config.hpp"

#include <caf/all.hpp>
#include <fstream>
#include <iostream>
#include <set>

namespace osd {

ServeConfig::ServeConfig() {
  auto& d = defaults_;
  opt_group{custom_options_, "osd"}
      .add(d.target, "target", "target model: a preset name")
      .add(d.draft, "draft", "draft model: a preset name, or none for target-only decoding")
      .add(d.device, "device", "device of both models: cpu, cuda or cuda:N")
      .add(d.dtype, "dtype", "weights and compute dtype: float32, bfloat16 or float16")
      .add(d.weights_seed, "weights-seed", "seed of the random weights of presets")
      .add(d.k, "k", "draft tokens per round when adaptive-k is off (0..64)")
      .add(d.adaptive_k, "adaptive-k", "choose k per sequence from its acceptance and the cost ratio")
      .add(d.k_max, "k-max", "upper bound of adaptive k (0..64)")
      .add(d.groups, "groups", "verification groups in flight (>= 2 overlaps drafting with verification)")
      .add(d.max_batch, "max-batch", "sequences in flight on the verifier (KV cache slots)")
      .add(d.max_len, "max-len", "KV cache positions per sequence (the context limit)")
      .add(d.max_in_flight, "max-in-flight", "admitted unfinished requests; beyond it clients get busy")
      .add(d.max_new_tokens, "max-new-tokens", "largest max_new_tokens a request may ask for")
      .add(d.max_frame_bytes, "max-frame-bytes", "largest request frame accepted")
      .add(d.endpoint, "endpoint", "ZeroMQ ROUTER endpoint clients connect to")
      .add(d.metrics_endpoint, "metrics-endpoint", "Prometheus GET /metrics endpoint (tcp://host:port), empty = off")
      .add(d.torch_threads, "torch-threads", "libtorch intra-op threads, 0 = number of cores");
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
  const char* file = nullptr;
  if (std::ifstream("conf/osd.conf").good()) file = "conf/osd.conf";
  if (auto err = parse(argc, argv, file)) return "configuration: " + caf::to_string(err);
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
  str("target", out.target);
  str("draft", out.draft);
  str("device", out.device);
  str("dtype", out.dtype);
  integer("weights-seed", out.weights_seed, 0, INT64_MAX);
  integer("k", out.k, 0, 64);
  boolean("adaptive-k", out.adaptive_k);
  integer("k-max", out.k_max, 0, 64);
  integer("groups", out.groups, 1, 16);
  integer("max-batch", out.max_batch, 1, 4096);
  integer("max-len", out.max_len, 2, 1 << 20);
  integer("max-in-flight", out.max_in_flight, 1, 1 << 20);
  integer("max-new-tokens", out.max_new_tokens, 1, 1 << 20);
  integer("max-frame-bytes", out.max_frame_bytes, 256, 1 << 30);
  str("endpoint", out.endpoint);
  str("metrics-endpoint", out.metrics_endpoint);
  integer("torch-threads", out.torch_threads, 0, 1024);
  return error.empty() ? "" : "configuration: " + error;
}

}  // namespace osd
