#include "actors/client_bridge.hpp"

#include <unordered_map>


namespace osd {

namespace {

struct BridgeState {
  std::unordered_map<RequestId, ClientCallPtr> calls;
  std::vector<caf::response_promise> drained;
  int64_t next_id = 1;
  static inline const char* name = "osd.client_bridge";
};

caf::behavior bridge(caf::stateful_actor<BridgeState>* self, caf::actor intake) {
  return {
    [=](submit_atom, Submission& sub, ClientCallPtr& call) {
      auto& st = self->state;
      if (sub.id.empty()) sub.id = "api-" + std::to_string(st.next_id++);
      if (st.calls.count(sub.id)) {
        call->on_done(DoneEvent{sub.id, {}, "", "error", "duplicate_id",
                                       "a request with id '" + sub.id + "' is in flight", {}, 0, 0});
        return;
      }
      st.calls.emplace(sub.id, std::move(call));
      self->send(intake, submit_atom_v, std::move(sub), caf::actor_cast<caf::actor>(self));
    },
    [=](const TokenEvent& ev) {
      auto it = self->state.calls.find(ev.id);
      if (it != self->state.calls.end() && it->second->on_tokens) it->second->on_tokens(ev);
    },
    [=](DoneEvent& ev) {
      auto& st = self->state;
      auto it = st.calls.find(ev.id);
      if (it == st.calls.end()) return;
      auto call = std::move(it->second);
      st.calls.erase(it);
      call->on_done(std::move(ev));
      if (st.calls.empty()) {
        for (auto& rp : st.drained) rp.deliver(int64_t{0});
        st.drained.clear();
      }
    },
    // Closes intake behind every submission this bridge has already forwarded.
    [=](close_atom) { return self->delegate(intake, drain_atom_v); },
    [=](drain_atom) -> caf::result<int64_t> {
      if (self->state.calls.empty()) return int64_t{0};
      auto rp = self->make_response_promise<int64_t>();
      self->state.drained.push_back(rp);
      return rp;
    },
  };
}

}  // namespace

caf::actor spawn_client_bridge(caf::actor_system& sys, caf::actor intake) {
  return sys.spawn(bridge, std::move(intake));
}

}  // namespace osd
