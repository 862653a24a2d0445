#pragma once
// client_bridge: the embedding API's end of the pipeline. Registers each call before handing
// the submission to intake (so no event can overtake its registration), invokes the token
// callback for each TokenEvent, and fulfils the call's promise with its DoneEvent.
//   (submit_atom, Submission, ClientCallPtr)
//   TokenEvent, DoneEvent                     from the verifier (or intake, for refusals)
//   (close_atom) -> int64_t                   drains intake after the submissions already sent
//   (drain_atom) -> int64_t                   replies once no call is outstanding
#include <functional>
#include <memory>

#include "actors/messages.hpp"

namespace osd {

struct ClientCall {
  std::function<void(const TokenEvent&)> on_tokens;  // may be empty; runs on the bridge's thread
  std::function<void(DoneEvent&&)> on_done;          // called exactly once
};
using ClientCallPtr = std::shared_ptr<ClientCall>;

caf::actor spawn_client_bridge(caf::actor_system& sys, caf::actor intake);

}  // namespace osd

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(osd::ClientCallPtr)
