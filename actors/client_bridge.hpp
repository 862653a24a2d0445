#pragma once
// client_bridge: the embedding API's end of the pipeline. Registers each call before handing
// the submission to intake (so no event can overtake its registration), invokes the token
// callback for each TokenEvent, and fulfils the call's promise with its DoneEvent.
//
// Ids: a client's id is unique among its calls in flight, but may be reused once the call is
// answered. Inside the actors every submission travels under a token of its own ("<id>#<n>",
// never reused), so a cancel that lags behind its request can never reach a later request with
// the same id; events are handed to the client under its own id.
//   (submit_atom, Submission, ClientCallPtr)
//   (cancel_atom, RequestId)                  the client's id: passed to intake as its token while
//                                             the call is outstanding; otherwise a no-op
//   TokenEvent, DoneEvent                     from the verifier (or intake, for refusals)
//   (fail_atom, code, message)                a part the requests need has died: every outstanding
//                                             call, and every later one, is answered with this error
//   (close_atom) -> int64_t                   drains intake after the submissions already sent
//   (drain_atom) -> int64_t                   replies once no call is outstanding
//   (stats_atom) -> int64_t                   calls outstanding
#include <functional>
#include <memory>

#include "actors/messages.hpp"

namespace osd {

// One call of the embedding API. finish() runs on_done exactly once; a call destroyed without
// an answer (its message dropped by a dead actor) answers itself with the error "unavailable",
// so no caller waits forever.
struct ClientCall {
  std::function<void(const TokenEvent&)> on_tokens;  // may be empty; runs on the bridge's thread
  std::function<void(DoneEvent&&)> on_done;          // called exactly once, through finish()
  std::string client_id;                             // set by the bridge
  void finish(DoneEvent&& done);
  bool finished() const { return finished_; }
  ~ClientCall();

 private:
  bool finished_ = false;
};
using ClientCallPtr = std::shared_ptr<ClientCall>;

struct BridgeOptions {
  size_t max_id_bytes = 256;  // longer client ids are refused (invalid_request)
};

caf::actor spawn_client_bridge(caf::actor_system& sys, caf::actor intake, BridgeOptions opt = {});

}  // namespace osd

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(osd::ClientCallPtr)
