#include "actors/intake.hpp"

#include <nlohmann/json.hpp>
#include <unordered_set>

#include "actors/messages.hpp"

namespace osd {

namespace {

struct IntakeState {
  caf::actor router, verifier;
  std::unordered_set<RequestId> in_flight;
  int64_t next_id = 1;
  bool draining = false;
  std::map<std::string, int64_t> refused;  // by error code
  int64_t admitted = 0;
  int64_t cancels_passed = 0, cancels_dropped = 0;
  static inline const char* name = "osd.intake";
};

std::string str(size_t n) { return std::to_string(n); }

}  // namespace

Refusal check_submission(const Submission& s, const IntakeOptions& o) {
  const auto& r = s.request;
  if (r.prompt.empty()) return {"invalid_request", "prompt is empty"};
  for (auto t : r.prompt)
    if (t < 0 || t >= o.vocab_size)
      return {"invalid_request", "prompt token " + std::to_string(t) + " outside the vocabulary [0, " +
                                     std::to_string(o.vocab_size) + ")"};
  if (r.max_new_tokens < 1 || r.max_new_tokens > o.max_new_tokens)
    return {"invalid_request", "max_new_tokens must be in [1, " + std::to_string(o.max_new_tokens) + "] (got " +
                                   std::to_string(r.max_new_tokens) + ")"};
  const auto prompt = static_cast<int64_t>(r.prompt.size());
  if (prompt >= o.context)
    return {"prompt_too_long", "prompt (" + std::to_string(prompt) + " tokens) leaves no room in the context of " +
                                   std::to_string(o.context) + " tokens; shorten the prompt"};
  if (prompt + r.max_new_tokens > o.context)
    return {"context_length_exceeded",
            "prompt (" + std::to_string(prompt) + " tokens) + max_new_tokens (" + std::to_string(r.max_new_tokens) +
                ") exceeds the context of " + std::to_string(o.context) + " tokens; lower max_new_tokens to at most " +
                std::to_string(o.context - prompt) + " or shorten the prompt"};
  if (auto e = r.sampling.validate(); !e.empty()) return {"invalid_request", e};
  if (r.stop.size() > o.max_stop_strings)
    return {"invalid_request", "at most " + str(o.max_stop_strings) + " stop strings (got " + str(r.stop.size()) + ")"};
  for (const auto& st : r.stop) {
    if (st.empty()) return {"invalid_request", "stop strings must not be empty"};
    if (st.size() > o.max_stop_bytes)
      return {"invalid_request", "a stop string may have at most " + str(o.max_stop_bytes) + " bytes (got " +
                                     str(st.size()) + ")"};
  }
  if (!r.stop.empty() && !o.has_tokenizer) return {"invalid_request", "stop strings need a tokenizer"};
  if (r.eos_ids.size() > o.max_eos_ids)
    return {"invalid_request", "at most " + str(o.max_eos_ids) + " eos ids (got " + str(r.eos_ids.size()) + ")"};
  for (auto t : r.eos_ids)
    if (t < 0 || t >= o.vocab_size)
      return {"invalid_request", "eos id " + std::to_string(t) + " outside the vocabulary [0, " +
                                     std::to_string(o.vocab_size) + ")"};
  return {};
}

namespace {

caf::behavior intake(caf::stateful_actor<IntakeState>* self, IntakeOptions opt) {
  return {
    [=](route_atom, caf::actor router) { self->state.router = std::move(router); },
    [=](cancel_atom, caf::actor verifier) { self->state.verifier = std::move(verifier); },
    [=](submit_atom, Submission& sub, caf::actor& sink) {
      auto& st = self->state;
      auto refuse = [&](const std::string& code, const std::string& msg) {
        ++st.refused[code];
        self->send(sink, DoneEvent{sub.id, {}, "", "error", code, msg, {}, 0, 0});
      };
      if (st.draining) return refuse("shutting_down", "the runtime is shutting down");
      if (sub.id.empty()) sub.id = "req-" + std::to_string(st.next_id++);
      if (auto r = check_submission(sub, opt); !r.empty()) return refuse(r.code, r.message);
      if (st.in_flight.count(sub.id)) return refuse("duplicate_id", "a request with id '" + sub.id + "' is in flight");
      if (static_cast<int64_t>(st.in_flight.size()) >= opt.max_in_flight)
        return refuse("busy", "queue full (" + std::to_string(opt.max_in_flight) + " in flight); retry after " +
                                  std::to_string(opt.retry_after_ms) + " ms");
      st.in_flight.insert(sub.id);
      ++st.admitted;
      self->send(st.router, route_atom_v, std::move(sub), std::move(sink));
    },
    // Messages from one sender keep their order, so a cancel sent after a submission meets it
    // here: admitted (in flight) or already refused (dropped).
    [=](cancel_atom, const RequestId& id) {
      auto& st = self->state;
      if (!st.in_flight.count(id) || !st.verifier) {
        ++st.cancels_dropped;
        return;
      }
      ++st.cancels_passed;
      self->send(st.verifier, cancel_atom_v, id);
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
      nlohmann::json j = {{"in_flight", st.in_flight.size()},
                          {"admitted", st.admitted},
                          {"refused", st.refused},
                          {"cancels_passed", st.cancels_passed},
                          {"cancels_dropped", st.cancels_dropped},
                          {"context", opt.context},
                          {"max_new_tokens", opt.max_new_tokens}};
      return j.dump();
    },
  };
}

}  // namespace

caf::actor spawn_intake(caf::actor_system& sys, IntakeOptions opt) { return sys.spawn(intake, opt); }

}  // namespace osd
