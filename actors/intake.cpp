#include "actors/intake.hpp"

#include <nlohmann/json.hpp>
#include <unordered_set>

#include "actors/messages.hpp"

namespace osd {

namespace {

struct IntakeState {
  caf::actor router;
  std::unordered_set<RequestId> in_flight;
  int64_t next_id = 1;
  bool draining = false;
  std::map<std::string, int64_t> refused;  // by error code
  int64_t admitted = 0;
  static inline const char* name = "osd.intake";
};

// Empty when the submission is acceptable, else {code, message}.
std::pair<std::string, std::string> check(const Submission& s, const IntakeOptions& o) {
  const auto& r = s.request;
  if (r.prompt.empty()) return {"invalid_request", "prompt is empty"};
  for (auto t : r.prompt)
    if (t < 0 || t >= o.vocab_size)
      return {"invalid_request", "prompt token " + std::to_string(t) + " outside the vocabulary [0, " +
                                     std::to_string(o.vocab_size) + ")"};
  if (r.max_new_tokens < 1 || r.max_new_tokens > o.max_new_tokens)
    return {"invalid_request", "max_new_tokens must be in [1, " + std::to_string(o.max_new_tokens) + "] (got " +
                                   std::to_string(r.max_new_tokens) + ")"};
  if (static_cast<int64_t>(r.prompt.size()) >= o.context)
    return {"prompt_too_long", "prompt of " + std::to_string(r.prompt.size()) + " tokens exceeds the context limit " +
                                   std::to_string(o.context - 1)};
  if (auto e = r.sampling.validate(); !e.empty()) return {"invalid_request", e};
  for (const auto& st : r.stop)
    if (st.empty()) return {"invalid_request", "stop strings must not be empty"};
  if (!r.stop.empty() && !o.has_tokenizer) return {"invalid_request", "stop strings need a tokenizer"};
  return {};
}

caf::behavior intake(caf::stateful_actor<IntakeState>* self, IntakeOptions opt) {
  return {
    [=](route_atom, caf::actor router) { self->state.router = std::move(router); },
    [=](submit_atom, Submission& sub, caf::actor& sink) {
      auto& st = self->state;
      auto refuse = [&](const std::string& code, const std::string& msg) {
        ++st.refused[code];
        self->send(sink, DoneEvent{sub.id, {}, "", "error", code, msg, {}, 0, 0});
      };
      if (st.draining) return refuse("shutting_down", "the runtime is shutting down");
      if (sub.id.empty()) sub.id = "req-" + std::to_string(st.next_id++);
      if (auto [code, msg] = check(sub, opt); !code.empty()) return refuse(code, msg);
      if (st.in_flight.count(sub.id)) return refuse("duplicate_id", "a request with id '" + sub.id + "' is in flight");
      if (static_cast<int64_t>(st.in_flight.size()) >= opt.max_in_flight)
        return refuse("busy", "queue full (" + std::to_string(opt.max_in_flight) + " in flight); retry after " +
                                  std::to_string(opt.retry_after_ms) + " ms");
      st.in_flight.insert(sub.id);
      ++st.admitted;
      self->send(st.router, route_atom_v, std::move(sub), std::move(sink));
    },
    [=](release_atom, const RequestId& id) { self->state.in_flight.erase(id); },
    // The verifier's final answer: the id is free before the client can see the answer.
    [=](release_atom, DoneEvent& done, const caf::actor& sink) {
      self->state.in_flight.erase(done.id);
      self->send(sink, std::move(done));
    },
    [=](drain_atom) -> int64_t {
      self->state.draining = true;
      return static_cast<int64_t>(self->state.in_flight.size());
    },
    [=](stats_atom) -> std::string {
      auto& st = self->state;
      nlohmann::json j = {{"in_flight", st.in_flight.size()}, {"admitted", st.admitted}, {"refused", st.refused}};
      return j.dump();
    },
  };
}

}  // namespace

caf::actor spawn_intake(caf::actor_system& sys, IntakeOptions opt) { return sys.spawn(intake, opt); }

}  // namespace osd
