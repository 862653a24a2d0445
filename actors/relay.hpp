#pragma once
// relay: a stable address for an actor that may be replaced (a route's buffer or distiller,
// restarted by the supervisor). Every message goes on to the current target; a request is
// delegated, so its answer (or the error of a dead target) goes straight back to the asker.
//   (route_atom, caf::actor target)   replace the target (null: requests get an error, other
//                                     messages are dropped)
//   anything else                     forwarded to the target
#include <caf/fwd.hpp>

namespace osd {

caf::actor spawn_relay(caf::actor_system& sys, caf::actor target);

}  // namespace osd
