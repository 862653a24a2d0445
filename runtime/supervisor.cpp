#include "runtime/supervisor.hpp"

#include <caf/all.hpp>

#include <map>

#include "actors/messages.hpp"
#include "models/common/log.hpp"

namespace osd {

const char* health_status_name(HealthStatus s) {
  switch (s) {
    case HealthStatus::ok: return "ok";
    case HealthStatus::degraded: return "degraded";
    case HealthStatus::draining: return "draining";
    case HealthStatus::failed: return "failed";
  }
  return "?";
}

void HealthBoard::add(const std::string& actor) {
  std::lock_guard<std::mutex> g(mu_);
  actors_.push_back(ActorHealth{actor, true, 0, ""});
}

void HealthBoard::died(const std::string& actor, const std::string& reason, bool restarted) {
  std::lock_guard<std::mutex> g(mu_);
  for (auto& a : actors_) {
    if (a.name != actor) continue;
    a.last_failure = reason;
    a.alive = restarted;
    a.restarts += restarted;
  }
  if (!restarted && degraded_.empty()) degraded_ = actor + " stopped (" + reason + ")";
}

void HealthBoard::fail(const std::string& reason) {
  std::lock_guard<std::mutex> g(mu_);
  if (failure_.empty()) failure_ = reason;
}

void HealthBoard::set_draining() {
  std::lock_guard<std::mutex> g(mu_);
  draining_ = true;
}

bool HealthBoard::failed() const {
  std::lock_guard<std::mutex> g(mu_);
  return !failure_.empty();
}

RuntimeHealth HealthBoard::snapshot() const {
  std::lock_guard<std::mutex> g(mu_);
  RuntimeHealth h;
  h.actors = actors_;
  if (!failure_.empty()) {
    h.status = HealthStatus::failed;
    h.reason = failure_;
  } else if (draining_) {
    h.status = HealthStatus::draining;
    h.reason = "intake is closed; requests in flight finish";
  } else if (!degraded_.empty()) {
    h.status = HealthStatus::degraded;
    h.reason = degraded_;
  }
  return h;
}

namespace {

struct SupervisorState {
  SupervisorOptions opt;
  std::map<caf::actor_addr, std::string> essential;  // address -> name
  std::map<caf::actor_addr, size_t> workers;         // address of the running one -> index
  std::vector<int64_t> restarts;
  bool closing = false;
  static inline const char* name = "osd.supervisor";
};

using Self = caf::stateful_actor<SupervisorState>;

void worker_died(Self* self, size_t i, const std::string& reason) {
  auto& st = self->state;
  auto& w = st.opt.workers[i];
  if (!w.respawn || st.restarts[i] >= st.opt.max_restarts) {
    const std::string why = !w.respawn ? w.why_not
                                       : std::to_string(st.opt.max_restarts) + " restarts used up";
    st.opt.board->died(w.name, reason, false);
    self->send(w.relay, route_atom_v, caf::actor{});
    log::error(log::cat(w.name, " died (", reason, ") and stays down (", why,
                        "): its route serves on with its last draft"));
    return;
  }
  ++st.restarts[i];
  w.current = w.respawn();
  st.workers[w.current.address()] = i;
  self->monitor(w.current);
  self->send(w.relay, route_atom_v, w.current);
  if (w.after_restart) w.after_restart();
  st.opt.board->died(w.name, reason, true);
  log::warn(log::cat(w.name, " died (", reason, ") and was restarted (", st.restarts[i], " of ",
                     st.opt.max_restarts, ")"));
}

caf::behavior supervisor(Self* self, SupervisorOptions opt) {
  auto& st = self->state;
  st.opt = std::move(opt);
  st.restarts.assign(st.opt.workers.size(), 0);
  for (auto& [name, a] : st.opt.essential) {
    if (!a) continue;
    st.essential[a.address()] = name;
    self->monitor(a);
  }
  for (size_t i = 0; i < st.opt.workers.size(); ++i) {
    auto& w = st.opt.workers[i];
    st.workers[w.current.address()] = i;
    self->monitor(w.current);
  }
  // Shutdown: the workers it runs (and their relays) stop with it.
  self->set_exit_handler([self](caf::exit_msg& m) {
    for (auto& w : self->state.opt.workers) {
      if (w.current) self->send_exit(w.current, m.reason);
      if (w.relay) self->send_exit(w.relay, m.reason);
    }
    self->quit(m.reason);
  });
  self->set_down_handler([self](caf::down_msg& dm) {
    auto& st = self->state;
    if (st.closing) return;
    const std::string reason = self->system().render(dm.reason);
    if (auto it = st.essential.find(dm.source); it != st.essential.end()) {
      const std::string why = it->second + " stopped (" + reason + ")";
      st.opt.board->died(it->second, reason, false);
      st.opt.board->fail(why);
      log::error("the runtime cannot serve: " + why +
                 "; every request in flight is answered \"unavailable\"");
      if (st.opt.bridge)
        self->send(st.opt.bridge, fail_atom_v, std::string("unavailable"),
                   "the server cannot serve: " + why + "; retry after it restarts");
      return;
    }
    if (auto it = st.workers.find(dm.source); it != st.workers.end()) {
      const size_t i = it->second;
      st.workers.erase(it);
      worker_died(self, i, reason);
    }
  });
  return {
      [=](fail_atom, const std::string& actor) -> bool {
        auto& st = self->state;
        for (auto& [name, a] : st.opt.essential)
          if (name == actor && a) return self->send_exit(a, caf::exit_reason::kill), true;
        for (auto& w : st.opt.workers)
          if (w.name == actor && w.current) return self->send_exit(w.current, caf::exit_reason::kill), true;
        return false;
      },
      [=](close_atom) -> bool {
        self->state.closing = true;
        return true;
      },
  };
}

}  // namespace

caf::actor spawn_supervisor(caf::actor_system& sys, SupervisorOptions opt) {
  // On the board before the supervisor runs: health lists every actor from the start.
  for (const auto& [name, a] : opt.essential) opt.board->add(name);
  for (const auto& w : opt.workers) opt.board->add(w.name);
  return sys.spawn(supervisor, std::move(opt));
}

}  // namespace osd
