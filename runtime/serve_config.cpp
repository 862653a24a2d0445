#include "runtime/serve_config.hpp"

#include <fstream>
#include <sstream>
#include <utility>
#include <vector>

#include "runtime/config_file.hpp"
#include "runtime/config_schema.hpp"

namespace osd {
namespace {

std::string did_you_mean(const std::string& name, const std::string& dashes) {
  const std::string near = nearest_option_name(name);
  return near.empty() ? " (osd-serve --help lists the options)" : " (did you mean " + dashes + near + "?)";
}

bool is_help(const std::string& a) { return a == "-h" || a == "--help" || a == "-?" || a == "--long-help"; }

// A command-line argument that is not an option: refused, with the fix when it looks like one.
std::string stray_argument(const std::string& a) {
  if (a.empty()) return "stray empty argument: osd-serve takes only --NAME=VALUE options (osd-serve --help lists them)";
  const std::string body = a.substr(a.find_first_not_of('-') == std::string::npos ? a.size() : a.find_first_not_of('-'));
  const std::string name = body.substr(0, body.find('='));
  if (a[0] == '-') {  // a single dash: "-osd.k=3"
    const std::string near = find_option(name) ? name : nearest_option_name(name);
    return "unknown option " + a + (near.empty() ? " (options are --NAME=VALUE; osd-serve --help lists them)"
                                                 : " (did you mean --" + near + body.substr(name.size()) + "?)");
  }
  const std::string near = find_option(name) ? name : nearest_option_name(name);
  if (body.find('=') != std::string::npos && !near.empty())
    return "stray argument '" + a + "': options start with -- (did you mean --" + near + body.substr(name.size()) + "?)";
  return "stray argument '" + a + "': osd-serve takes no positional arguments, only --NAME=VALUE options "
         "(osd-serve --help lists them)";
}

std::string read_file(const std::string& path, std::string* text) {
  std::ifstream in(path);
  if (!in) return "cannot read the config file " + path;
  std::ostringstream ss;
  ss << in.rdbuf();
  *text = ss.str();
  return "";
}

// "word word ..." wrapped at `width` columns, each line after `indent`.
std::string wrap(const std::string& text, const std::string& indent, size_t width) {
  std::string out, line;
  std::istringstream words(text);
  for (std::string w; words >> w;) {
    if (!line.empty() && indent.size() + line.size() + 1 + w.size() > width) {
      out += indent + line + "\n";
      line.clear();
    }
    line += (line.empty() ? "" : " ") + w;
  }
  if (!line.empty()) out += indent + line + "\n";
  return out;
}

}  // namespace

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

std::string apply_config_text(const std::string& text, const std::string& source, ServeSettings* out) {
  std::string why;
  const auto entries = parse_config_text(text, &why);
  if (!entries) return source + ":" + why;
  for (const auto& e : *entries) {
    const std::string where = source + ":" + std::to_string(e.line) + ": ";
    const OptionSpec* option = find_option(e.name);
    if (!option) return where + "unknown option " + e.name + did_you_mean(e.name, "");
    if (auto err = set_option(*option, e.value, *out); !err.empty()) return where + err;
  }
  return "";
}

std::string load_serve_config(int argc, const char* const* argv, ServeConfigLoad* out) {
  *out = ServeConfigLoad{};
  std::vector<std::pair<const OptionSpec*, std::string>> given;  // applied after the file
  std::string file;
  bool file_named = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (is_help(a)) {
      out->action = ServeAction::print_help;
      return "";
    }
    if (a == "--print-config-doc") {
      out->action = ServeAction::print_config_doc;
      continue;
    }
    if (a == "--config-file" || a.rfind("--config-file=", 0) == 0) {
      if (a == "--config-file" && i + 1 == argc) return "--config-file needs a path: --config-file=PATH";
      file = a == "--config-file" ? argv[++i] : a.substr(14);
      file_named = true;
      continue;
    }
    if (a.size() <= 2 || a.rfind("--", 0) != 0) return stray_argument(a);
    const auto eq = a.find('=');
    const std::string name = a.substr(2, eq == std::string::npos ? std::string::npos : eq - 2);
    const OptionSpec* option = find_option(name);
    if (!option) return "unknown option --" + name + did_you_mean(name, "--");
    if (eq == std::string::npos) {
      // A boolean alone is switched on; the others need their value in the same argument.
      if (option->type() != OptionType::boolean)
        return "--" + name + " needs a value: --" + name + "=VALUE" +
               (option->accepted().empty() ? "" : " with VALUE in " + option->accepted());
      given.emplace_back(option, "true");
    } else {
      given.emplace_back(option, a.substr(eq + 1));
    }
  }
  if (out->action == ServeAction::print_config_doc) return "";
  if (!file_named && std::ifstream("conf/osd.conf").good()) file = "conf/osd.conf";
  if (!file.empty()) {
    std::string text;
    if (auto err = read_file(file, &text); !err.empty()) return err;
    if (auto err = apply_config_text(text, file, &out->settings); !err.empty()) return err;
    out->config_file = file;
  }
  for (const auto& [option, value] : given)
    if (auto err = set_option(*option, value, out->settings); !err.empty()) return err;
  return "";
}

RuntimeOptions runtime_options(const ServeSettings& s) {
  RuntimeOptions ro;
  ro.max_batch = s.max_batch;
  ro.max_len = s.max_len;
  ro.warm_attention_plans = s.warm_attention_plans;
  ro.k = s.k;
  ro.adaptive_k = s.adaptive_k;
  ro.prefill_chunk = s.prefill_chunk;
  ro.sampling = s.sampling == "rejection" ? SpecSampling::rejection : SpecSampling::coupled;
  ro.k_max = s.k_max;
  ro.groups = s.groups;
  ro.max_in_flight = s.max_in_flight;
  ro.max_new_tokens_limit = s.max_new_tokens;
  ro.max_id_bytes = s.max_id_bytes;
  ro.max_restarts = s.max_restarts;
  ro.threads = static_cast<int>(s.scheduler_threads);
  ro.scheduler = s.scheduler_policy;
  ro.online = s.online;
  return ro;
}

ZmqServerOptions zmq_server_options(const ServeSettings& s) {
  ZmqServerOptions zo;
  zo.endpoint = s.endpoint;
  zo.metrics_endpoint = s.metrics_endpoint;
  zo.max_frame_bytes = static_cast<size_t>(s.max_frame_bytes);
  zo.max_id_bytes = static_cast<size_t>(s.max_id_bytes);
  zo.max_clients = s.max_clients;
  zo.client_send_hwm = s.client_send_hwm;
  zo.heartbeat_ms = s.heartbeat_ms;
  zo.max_metrics_connections = s.max_metrics_connections;
  zo.metrics_idle_ms = s.metrics_idle_ms;
  zo.max_pending_stats = s.max_pending_stats;
  return zo;
}

std::string serve_help_text() {
  std::string out =
      "osd-serve: serves speculative decoding over ZeroMQ (and OpenAI's HTTP API with --osd.http).\n\n"
      "usage: osd-serve [--config-file=PATH] [--NAME=VALUE ...]\n\n"
      "Each option takes its default, then the config file's value (--config-file=PATH, else\n"
      "conf/osd.conf when the working directory has one; group `osd { k = 6 }`), then the command\n"
      "line's (--osd.k=6; a boolean alone, --osd.online, means true). docs/CONFIG.md lists the same.\n";
  std::string section;
  for (const auto& o : serve_options()) {
    if (o.section != section) {
      section = o.section;
      out += "\n" + section + ":\n";
    }
    const std::string accepted = o.accepted();
    const std::string default_text = option_default_text(o);
    out += "  --" + o.name + "=" + option_type_name(o.type()) +
           "  [default: " + (default_text.empty() ? "(empty)" : default_text) + "]" +
           (accepted.empty() || o.type() == OptionType::boolean ? "" : "  " + accepted) + "\n";
    out += wrap(o.help, "      ", 100);
  }
  out += "\nOther arguments:\n  --config-file=PATH  read options from PATH\n"
         "  --print-config-doc  print docs/CONFIG.md (the options and environment variables)\n"
         "  -h, --help          this text\n";
  return out;
}

}  // namespace osd
