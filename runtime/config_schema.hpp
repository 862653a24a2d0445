#pragma once
// osd-serve's options, each declared once (name, type, default, range or choices, help) in one
// table. From it come the command line (--osd.KEY=VALUE), the config file (conf/osd.conf),
// the validation errors, `osd-serve --help` and docs/CONFIG.md (runtime/config_doc.hpp). No
// torch, no CAF.
#include <cstdint>
#include <string>
#include <variant>
#include <vector>

#include "runtime/serve_settings.hpp"

namespace osd {

enum class OptionType { text, integer, real, boolean };
const char* option_type_name(OptionType t);  // text | integer | real | boolean

// Where an option's value lives in ServeSettings; its alternative is the option's type.
using SettingRef = std::variant<std::string*, int64_t*, double*, bool*>;

struct OptionSpec {
  std::string name;     // as written on the command line without "--": "osd.k", "scheduler.policy"
  std::string section;  // heading in --help and docs/CONFIG.md
  SettingRef (*field)(ServeSettings&);
  // integer options: the closed range of accepted values
  int64_t int_min = 0, int_max = 0;
  // real options: the closed range
  double real_min = 0, real_max = 0;
  // text options with a fixed set of values (empty: any text, checked by `check` if set)
  std::vector<std::string> choices;
  // text options: "" when the value is acceptable, else why not (e.g. HOST:PORT), and what it
  // accepts in words for --help and docs/CONFIG.md
  std::string (*check)(const std::string& value) = nullptr;
  std::string check_accepts;
  std::string help;

  OptionType type() const;
  std::string group() const;  // "osd", "scheduler"
  std::string key() const;    // the name without its group: "k"
  // The accepted values in words: "[0, 64]", "coupled | rejection", "true | false", "" (any).
  std::string accepted() const;
};

// Every option, in the order of --help and docs/CONFIG.md.
const std::vector<OptionSpec>& serve_options();
// The option called `name` ("osd.k"), or null.
const OptionSpec* find_option(const std::string& name);
// The declared name closest to `name` (edit distance 1 for names of up to 3 characters, else at
// most about a third of its length), or "".
std::string nearest_option_name(const std::string& name);

// The option's value in `s`, as written in a config file or on the command line ("4", "true",
// "0.001", "cpu"; text unquoted).
std::string option_value_text(const OptionSpec& option, const ServeSettings& s);
// Its value in a default-constructed ServeSettings.
std::string option_default_text(const OptionSpec& option);

// Parses `value` as the option's type, checks its range or choices and stores it in `out`.
// Returns "" or the error, naming the option and what it accepts.
std::string set_option(const OptionSpec& option, const std::string& value, ServeSettings& out);

}  // namespace osd
