#include "actors/router.hpp"

#include "actors/messages.hpp"

namespace osd {

namespace {
caf::behavior router(caf::event_based_actor* self, caf::actor verifier) {
  return {
    [=](route_atom, Submission& sub, caf::actor& sink) {
      self->send(verifier, admit_atom_v, std::move(sub), std::move(sink));
    },
  };
}
}  // namespace

caf::actor spawn_router(caf::actor_system& sys, caf::actor verifier) { return sys.spawn(router, std::move(verifier)); }

}  // namespace osd
