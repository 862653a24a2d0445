#pragma once
// The runtime's supervisor: monitors every actor the runtime wires (the verifier supervises its
// drafters itself).
//   - A route's buffer or distiller that dies is restarted (up to max_restarts times) behind its
//     relay (actors/relay.hpp), so the verifier and the distiller keep their handles: a buffer
//     restores its held-out slice from state_dir, a distiller its saved state. A worker that
//     cannot be restarted (a distiller without state_dir, or after max_restarts) stays down and
//     its route serves on with the last draft it published: health "degraded".
//   - An actor the requests need (verifier, intake, router, metrics, client bridge, user stages)
//     that dies cannot be rebuilt: the runtime is "failed", the client bridge answers every
//     outstanding call and every later one with the error "unavailable", and a server exits so
//     its supervisor (systemd, Kubernetes) restarts it.
//   (fail_atom, std::string actor) -> bool   ends the named actor as a crash would (tests, drills)
//   (close_atom) -> bool                      shutdown begins: deaths from now on are expected
//   an exit message                           stops the workers it runs and their relays, then itself
#include <caf/actor.hpp>

#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "runtime/runtime.hpp"

namespace osd {

// What the supervisor knows, readable from any thread without asking an actor.
class HealthBoard {
 public:
  void add(const std::string& actor);
  // An actor died; `restarted`: a new one runs in its place.
  void died(const std::string& actor, const std::string& reason, bool restarted);
  void fail(const std::string& reason);  // the runtime cannot serve any more
  void set_draining();
  bool failed() const;
  RuntimeHealth snapshot() const;  // in_flight is left 0 (the runtime fills it)

 private:
  mutable std::mutex mu_;
  std::vector<ActorHealth> actors_;
  bool draining_ = false;
  std::string failure_, degraded_;
};

// A route's buffer or distiller: the relay others send to, and how to start a new one.
struct SupervisedWorker {
  std::string name;                      // health's name, e.g. "buffer:default"
  caf::actor relay;                      // the stable handle the other actors hold
  caf::actor current;                    // the running actor
  std::function<caf::actor()> respawn;   // empty: cannot be restarted (why_not says why)
  std::string why_not;
  std::function<void()> after_restart;   // e.g. a buffer's distiller asks the new buffer again
};

struct SupervisorOptions {
  std::shared_ptr<HealthBoard> board;
  caf::actor bridge;
  std::vector<std::pair<std::string, caf::actor>> essential;  // name -> actor
  std::vector<SupervisedWorker> workers;
  int64_t max_restarts = 3;
};

caf::actor spawn_supervisor(caf::actor_system& sys, SupervisorOptions opt);

}  // namespace osd
