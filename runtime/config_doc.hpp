#pragma once
// docs/CONFIG.md, generated from the schema (runtime/config_schema.hpp) and the table of
// environment variables below: `osd-serve --print-config-doc > docs/CONFIG.md`
// (scripts/gen-config-doc.sh); a test fails when the checked-in file differs.
#include <string>
#include <vector>

namespace osd {

// An environment variable osd reads (every getenv("OSD_...") in the tree is listed; a test
// checks it).
struct EnvVariable {
  std::string name;
  std::string audience;  // users | operators | benchmarks | GPU comparisons | tests
  std::string read_by;   // the programs or code that read it
  std::string help;
};
const std::vector<EnvVariable>& environment_variables();

// The whole of docs/CONFIG.md.
std::string config_markdown();

}  // namespace osd
