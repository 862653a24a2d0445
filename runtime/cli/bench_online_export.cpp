#include "runtime/cli/bench_online_export.hpp"

#include <algorithm>
#include <fstream>
#include <set>

#include "models/common/error.hpp"
#include "models/common/files.hpp"
#include "models/core/transformer.hpp"
#include "models/distillation/online_distiller.hpp"
#include "models/weights/hf_checkpoint.hpp"

namespace osd::bench {

void export_drafts(const std::string& dir, const Transformer& target,
                   const Transformer& static_draft, const std::string& state_dir,
                   const std::map<std::string, std::string>& domain_route, nlohmann::json extra) {
  files::make_dirs(dir);
  save_hf_checkpoint(dir + "/target", target);
  save_hf_checkpoint(dir + "/draft-static", static_draft);
  nlohmann::json online = nlohmann::json::object();
  std::set<std::string> routes;
  for (const auto& [domain, route] : domain_route) routes.insert(route);
  for (const auto& route : routes) {
    const std::string saved = state_dir + "/route-" + route, folder = "draft-online-" + route;
    // The newest intact version of the route's saved state (a sealed folder under `saved`).
    const auto found = OnlineDistiller::find_saved(saved);
    const int64_t version = found.version;
    if (version >= 0)
      save_hf_checkpoint(dir + "/" + folder, *load_hf_checkpoint(found.path));
    else
      save_hf_checkpoint(dir + "/" + folder, static_draft);
    online[route] = {{"folder", folder}, {"version", std::max<int64_t>(version, 0)},
                     {"saved", version >= 0}};
  }
  extra["target"] = {{"folder", "target"}, {"dtype", dtype_name(target.config().dtype)}};
  extra["static_draft"] = {{"folder", "draft-static"}};
  extra["online_drafts"] = online;
  extra["domain_route"] = domain_route;
  std::ofstream f(dir + "/manifest.json");
  f << extra.dump(1) << "\n";
  if (!f) throw Error(dir + "/manifest.json: cannot write");
}

}  // namespace osd::bench
