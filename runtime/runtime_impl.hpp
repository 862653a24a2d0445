#pragma once
// The runtime's state behind Runtime (runtime/runtime.hpp): the actor system and the handles of
// every actor it spawned. Shared by runtime.cpp (the API) and runtime_create.cpp (the wiring);
// nothing outside runtime/ includes it.
#include <atomic>
#include <caf/all.hpp>
#include <memory>
#include <string>
#include <vector>

#include "runtime/runtime.hpp"
#include "runtime/supervisor.hpp"

namespace osd {

struct Runtime::Impl {
  RuntimeOptions opt;
  std::unique_ptr<caf::actor_system_config> cfg;
  std::unique_ptr<caf::actor_system> sys;
  caf::actor metrics, intake, verifier, router, bridge, supervisor;
  std::vector<std::string> route_names;
  std::vector<caf::actor> drafters;
  // Per route (online only): relays to the route's buffer and distiller, which the supervisor
  // may replace (runtime/supervisor.hpp); everyone holds the relays.
  std::vector<caf::actor> buffers, distillers;
  std::vector<caf::actor> stages;
  std::shared_ptr<HealthBoard> board = std::make_shared<HealthBoard>();
  std::atomic<int64_t> next_id{1};
  // Calls submitted and not yet answered (shared: a call may be answered while the system stops).
  std::shared_ptr<std::atomic<int64_t>> in_flight = std::make_shared<std::atomic<int64_t>>(0);
  std::atomic<bool> stopped{false};
};

}  // namespace osd
