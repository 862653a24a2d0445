#pragma once
// router: picks the draft route of every request and hands it to the verifier.
//
// A request whose `domain` names a route goes there. Any other request is routed automatically:
// the router keeps, per route, a profile of the prompts known to belong to it (hashed byte
// trigram frequencies, L2-normalised) and picks the route whose profile is most similar to the
// prompt (cosine). Profiles learn online from two sources:
//   - labelled requests: their prompt joins their route's profile;
//   - evaluations: for a sample of automatically routed requests (every one until each route
//     has eval_warmup examples, then one in eval_every) the verifier scores the finished text
//     with every route's draft; the prompt joins the profile of the draft that agreed best
//     with the target, and the metrics count whether the router's pick was that best draft.
// Before any profile exists, automatic requests go round-robin, so every draft gets tried.
//   (route_atom, Submission, sink)  ->  verifier: (admit_atom, Submission, sink) with sub.route set
//   (RouteOutcome)                     from the verifier when an automatic request finishes
//   (stats_atom) -> std::string        JSON: picks per route, evaluations, best-pick rate
#include <caf/fwd.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace osd {

struct RouterOptions {
  std::vector<std::string> routes;  // route names; index = route id
  int64_t eval_every = 8;           // evaluate one in this many automatic requests (0: never)
  int64_t eval_warmup =
      16;  // evaluate every automatic request until each route has this many examples
};

caf::actor spawn_router(caf::actor_system& sys, caf::actor verifier, RouterOptions opt);

}  // namespace osd
