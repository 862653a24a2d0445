#pragma once
// router: picks the draft for each request and hands it to the verifier. One draft for now:
// every request goes to draft 0. (Issue 6 adds routes per domain and an automatic router.)
//   (route_atom, Submission, sink)  ->  verifier: (admit_atom, Submission, sink)
#include <caf/fwd.hpp>

namespace osd {

caf::actor spawn_router(caf::actor_system& sys, caf::actor verifier);

}  // namespace osd
