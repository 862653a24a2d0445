#pragma once
// Reads osd-serve's config file (conf/osd.conf): CAF's config format as osd uses it. Groups
// `name { ... }` (nested, or dotted names: `osd.k = 6`), `key = value` with a value that is a
// quoted string ("..." or '...', backslash escapes), a number, true or false, or a bare word;
// comments run from `;` to the end of the line. Which keys exist and what they accept is the
// schema's business (runtime/config_schema.hpp), not the reader's.
#include <optional>
#include <string>
#include <vector>

namespace osd {

struct ConfigEntry {
  std::string name;   // the full dotted name: "osd.k"
  std::string value;  // unquoted text: "6", "cpu", "true"
  int line = 0;       // 1-based
};

// The entries of `text` in order; nullopt and *error ("LINE: what is wrong") when it is malformed.
std::optional<std::vector<ConfigEntry>> parse_config_text(const std::string& text, std::string* error);

}  // namespace osd
