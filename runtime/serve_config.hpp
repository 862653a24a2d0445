#pragma once
// osd-serve's configuration from its command line and config file, by the schema of
// runtime/config_schema.hpp: defaults (ServeSettings), then the config file (--config-file=PATH,
// else conf/osd.conf when the working directory has one), then --NAME=VALUE arguments. Every
// error is one line that names the option and what it accepts; an unknown name gets the closest
// declared one ("unknown option --osd.kk (did you mean --osd.k?)"), and arguments that are not
// options are refused. No torch, no CAF.
#include <string>

#include "runtime/serve_settings.hpp"

namespace osd {

enum class ServeAction {
  serve,             // run the server with the settings
  print_help,        // -h / --help: print serve_help_text()
  print_config_doc,  // --print-config-doc: print config_markdown() (docs/CONFIG.md)
};

struct ServeConfigLoad {
  ServeAction action = ServeAction::serve;
  ServeSettings settings;
  std::string config_file;  // the file read, "" when none
};

// Fills `out` from argv (argv[0] is the program). Returns "" or the error (one line).
std::string load_serve_config(int argc, const char* const* argv, ServeConfigLoad* out);

// The same for a config file's text (`source` names it in errors), applied on top of `out`.
std::string apply_config_text(const std::string& text, const std::string& source, ServeSettings* out);

// The embedding API's options the settings give: every field but the models, routes and
// tokenizer, which osd-serve loads (online.enabled as set; osd-serve turns it off without a draft).
RuntimeOptions runtime_options(const ServeSettings& s);
// The ZeroMQ front end's: every field but the tokenizer's encode and default eos.
ZmqServerOptions zmq_server_options(const ServeSettings& s);

// What `osd-serve --help` prints: usage, then every option with its default and range.
std::string serve_help_text();

}  // namespace osd
