#include "actors/relay.hpp"

#include "actors/messages.hpp"

namespace osd {

namespace {

struct RelayState {
  caf::actor target;
  static inline const char* name = "osd.relay";
};

caf::behavior relay(caf::stateful_actor<RelayState>* self, caf::actor target) {
  self->state.target = std::move(target);
  self->set_default_handler([self](caf::scheduled_actor*, caf::message_view& view) -> caf::result<caf::message> {
    auto msg = view.move_content_to_message();
    const auto& target = self->state.target;
    if (!self->current_message_id().is_request()) {  // a plain message: sent on (or dropped)
      if (target) self->send(target, std::move(msg));
      return caf::message{};
    }
    if (!target) return caf::make_error(caf::sec::request_receiver_down);
    auto rp = self->make_response_promise();
    rp.delegate(target, std::move(msg));
    return rp;
  });
  return {
      [=](route_atom, caf::actor next) { self->state.target = std::move(next); },
  };
}

}  // namespace

caf::actor spawn_relay(caf::actor_system& sys, caf::actor target) { return sys.spawn(relay, std::move(target)); }

}  // namespace osd
