#pragma once
// osd-bench online --export-drafts DIR: the weights of a run as Hugging Face checkpoint folders,
// so that another implementation (scripts/hf_assisted.py) runs the same target and drafts:
//   DIR/target               the target as osd served it (its dtype)
//   DIR/draft-static         the draft as loaded (the static replay's)
//   DIR/draft-online-ROUTE   each route's draft as the online replay left it (its saved state)
//   DIR/manifest.json        {"target", "static_draft", "online_drafts": {route: {"folder",
//                            "version"}}, "domain_route": {domain: route}, "prompts", ...}
#include <nlohmann/json.hpp>

#include <map>
#include <memory>
#include <string>

namespace osd {
class Transformer;
}

namespace osd::bench {

// state_dir: the online replay's saved state (route-NAME folders); routes: route names; a route
// whose folder is missing (nothing saved) exports the static draft with version 0. `extra` goes
// into the manifest as is. Throws osd::Error when a folder cannot be written.
void export_drafts(const std::string& dir, const Transformer& target,
                   const Transformer& static_draft, const std::string& state_dir,
                   const std::map<std::string, std::string>& domain_route, nlohmann::json extra);

}  // namespace osd::bench
