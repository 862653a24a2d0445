#include "actors/client_bridge.hpp"

#include <unordered_map>

namespace osd {

void ClientCall::finish(DoneEvent&& done) {
  if (finished_) return;
  finished_ = true;
  if (on_done) on_done(std::move(done));
}

ClientCall::~ClientCall() {
  if (finished_) return;
  finish(DoneEvent{client_id, {}, "", "error", "unavailable",
                   "the request was lost: the runtime stopped before answering it", {}, 0, 0});
}

namespace {

struct BridgeState {
  std::unordered_map<RequestId, ClientCallPtr> calls;  // token -> call
  std::unordered_map<RequestId, RequestId> tokens;     // client id -> token of its call
  std::vector<caf::response_promise> drained;
  int64_t next_id = 1, next_token = 1;
  std::string fail_code, fail_message;  // set once the runtime cannot serve
  static inline const char* name = "osd.client_bridge";
};

DoneEvent error_event(const std::string& id, const std::string& code, const std::string& message) {
  return DoneEvent{id, {}, "", "error", code, message, {}, 0, 0};
}

void answer(BridgeState& st, std::unordered_map<RequestId, ClientCallPtr>::iterator it, DoneEvent&& ev) {
  auto call = std::move(it->second);
  st.calls.erase(it);
  st.tokens.erase(call->client_id);
  ev.id = call->client_id;
  call->finish(std::move(ev));
  if (st.calls.empty()) {
    for (auto& rp : st.drained) rp.deliver(int64_t{0});
    st.drained.clear();
  }
}

caf::behavior bridge(caf::stateful_actor<BridgeState>* self, caf::actor intake, BridgeOptions opt) {
  return {
    [=](submit_atom, Submission& sub, ClientCallPtr& call) {
      auto& st = self->state;
      if (sub.id.empty()) sub.id = "api-" + std::to_string(st.next_id++);
      call->client_id = sub.id;
      if (!st.fail_code.empty()) return call->finish(error_event(sub.id, st.fail_code, st.fail_message));
      if (sub.id.size() > opt.max_id_bytes)
        return call->finish(error_event(sub.id, "invalid_request",
                                        "id must have at most " + std::to_string(opt.max_id_bytes) + " bytes (got " +
                                            std::to_string(sub.id.size()) + ")"));
      if (st.tokens.count(sub.id))
        return call->finish(
            error_event(sub.id, "duplicate_id", "a request with id '" + sub.id + "' is in flight"));
      const RequestId token = sub.id + "#" + std::to_string(st.next_token++);
      st.tokens.emplace(sub.id, token);
      st.calls.emplace(token, std::move(call));
      sub.id = token;
      self->send(intake, submit_atom_v, std::move(sub), caf::actor_cast<caf::actor>(self));
    },
    [=](cancel_atom, const RequestId& client_id) {
      auto it = self->state.tokens.find(client_id);
      if (it != self->state.tokens.end()) self->send(intake, cancel_atom_v, it->second);
    },
    [=](TokenEvent& ev) {
      auto it = self->state.calls.find(ev.id);
      if (it == self->state.calls.end() || !it->second->on_tokens) return;
      ev.id = it->second->client_id;
      it->second->on_tokens(ev);
    },
    [=](DoneEvent& ev) {
      auto& st = self->state;
      auto it = st.calls.find(ev.id);
      if (it == st.calls.end()) return;  // answered already (e.g. failed below)
      // Frees the intake's place also for a request a user stage answered itself (the verifier's
      // answers have freed it already; a second release is a no-op).
      self->send(intake, release_atom_v, ev.id);
      answer(st, it, std::move(ev));
    },
    [=](fail_atom, const std::string& code, const std::string& message) {
      auto& st = self->state;
      if (st.fail_code.empty()) {
        st.fail_code = code;
        st.fail_message = message;
      }
      while (!st.calls.empty()) answer(st, st.calls.begin(), error_event("", code, message));
    },
    // Closes intake behind every submission this bridge has already forwarded.
    [=](close_atom) { return self->delegate(intake, drain_atom_v); },
    [=](drain_atom) -> caf::result<int64_t> {
      if (self->state.calls.empty()) return int64_t{0};
      auto rp = self->make_response_promise<int64_t>();
      self->state.drained.push_back(rp);
      return rp;
    },
    [=](stats_atom) -> int64_t { return static_cast<int64_t>(self->state.calls.size()); },
  };
}

}  // namespace

caf::actor spawn_client_bridge(caf::actor_system& sys, caf::actor intake, BridgeOptions opt) {
  return sys.spawn(bridge, std::move(intake), opt);
}

}  // namespace osd
