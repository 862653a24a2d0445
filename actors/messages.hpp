#pragma once
// Every message type and atom of osd's actors, declared once.
//
// clang-format off
//   client -> intake      submit_atom, Submission, sink         (sink gets TokenEvent / DoneEvent)
//   intake -> router      route_atom, Submission, sink
//   router -> verifier    admit_atom, Submission (route set), sink
//   verifier -> router    RouteOutcome                          (automatically routed requests)
//   verifier -> drafter   score_atom(tokens, from) -> double    (greedy agreement, router evaluation)
//   verifier -> drafter   propose_atom(ProposeRequest) -> Proposals   (only rows that draft; each
//                         row's DraftSync brings the drafter up to date first) | remove_atom(id)
//   verifier -> sink      TokenEvent (streaming), DoneEvent (once per request)
//   verifier -> intake    release_atom(DoneEvent, sink)           frees a queue place, then
//                         intake -> sink DoneEvent                (an id is free before its answer)
//   verifier -> buffer    records_atom(RecordSource)            target distributions it verified
//                                                               (the buffer builds the records)
//   distiller -> buffer   sample_atom(n, min_new, route, wait_ms) -> DistillBatch
//                         (answered once min_new are new, or after wait_ms once any is)
//   distiller -> verifier swap_atom(WeightsSnapshot)            -> drafter: swap_atom(WeightsSnapshot)
//   anyone -> metrics     RoundMetrics, DoneEvent, DistillMetrics; stats_atom -> JSON
//   runtime -> metrics    route_atom(route names, draft versions)  (labels of per-route metrics)
//   bridge -> intake      cancel_atom(RequestId)                 -> verifier, only while in flight
//   supervisor -> bridge  fail_atom(code, message)               answer every outstanding call
// clang-format on
//
// Every message type has an inspect() overload, so any actor could live in another process
// (CAF's middleman). Tensors travel as bytes (torch's pickle format) when serialized; between
// local actors CAF moves the message and no tensor is copied.
#include <caf/all.hpp>

#include <memory>
#include <string>
#include <vector>

#include "models/distillation/distill_buffer.hpp"
#include "models/weights/model_bytes.hpp"
#include "models/speculation/spec_types.hpp"
#include "models/core/tensor_util.hpp"

namespace osd {

using RequestId = std::string;

// One client request as it travels through the actors.
struct Submission {
  RequestId id;
  GenerationRequest request;
  std::string domain;  // route hint ("" = automatic)
  bool stream = true;
  int64_t route = 0;   // the draft route the router chose (index into the runtime's routes)
  bool auto_routed = false;  // chosen by the automatic router (no matching domain label)
  bool evaluate_routes = false;  // score the finished text with every route's draft (router learning)
  double submitted_us = 0;  // steady-clock microseconds at submission (latencies start here)
};

// Tokens accepted for one request in one round (streaming).
struct TokenEvent {
  RequestId id;
  std::vector<int64_t> tokens;
  std::string text;  // decoded text of these tokens ("" without a tokenizer)
};

// The final answer for one request: exactly one per submission.
struct DoneEvent {
  RequestId id;
  std::vector<int64_t> tokens;
  std::string text;
  std::string finish;       // "length", "eos", "stop", "cancelled", "error"
  std::string error_code;   // set when finish == "error" (e.g. "busy", "invalid_request")
  std::string error_message;
  SpecStats stats;
  double ttft_ms = 0;       // time to first token
  double total_ms = 0;
  std::string route;        // name of the draft route that served it ("" without a draft)
  // For the metrics actor's histograms; -1: not reported by the sender.
  int64_t prompt_tokens = -1;
  double queue_ms = -1;     // submission to admission into a KV cache slot
};

// One verification round, for the metrics actor.
struct RoundMetrics {
  int64_t batch = 0;
  int64_t draft_tokens = 0;
  int64_t accepted = 0;
  int64_t emitted = 0;
  double score_ms = 0;     // verifier busy time of this round
  double wait_ms = 0;      // verifier idle time before it (waiting for proposals)
  int64_t draft_version = 0;
};

using VerdictList = std::vector<Verdict>;

// A proposal request from the verifier: rows ids[i] draft k[i] tokens after `syncs` (one per row
// with k > 0) brought the drafter's copy of each sequence up to date: the verdict of its last
// proposal and every token emitted since (rounds at k = 0 never reach the drafter).
struct ProposeRequest {
  std::vector<SeqId> ids;
  std::vector<int64_t> k;
  std::vector<DraftSync> syncs;
};

// Immutable draft weights with a version, from the distiller to the verifier and drafter. The
// model is never modified after it is published; actors share it read-only.
struct WeightsSnapshot {
  int64_t version = 0;
  int64_t route = 0;
  std::shared_ptr<const Transformer> model;
  // The acceptance its distiller measured on held-out requests (-1: not measured): the scheduler's
  // prior for the route's sequences under this version.
  double heldout_acceptance = -1;
};

// A training batch for the distiller: the newest records and the held-out slice of its route.
struct DistillBatch {
  std::vector<DistillRecord> train;
  std::vector<DistillRecord> heldout;
};

// What the verifier learned about an automatically routed request, for the router: the chosen
// route's acceptance and, when the request was sampled for evaluation, every route's greedy
// agreement with the target's output (empty otherwise).
struct RouteOutcome {
  RequestId id;
  int64_t route = 0;
  double acceptance = 0;
  std::vector<double> agreement;  // per route; empty: not evaluated
};

// One distiller decision, for the metrics actor and the log.
struct DistillMetrics {
  int64_t route = 0;
  int64_t version = 0;
  bool published = false;
  std::string decision;
  double loss = 0;
  double acceptance_candidate = -1, acceptance_current = -1;
  int64_t steps = 0, discarded_steps = 0;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, SamplingParams& x) {
  return f(caf::meta::type_name("osd::SamplingParams"), x.temperature, x.top_k, x.top_p, x.seed,
           x.mode);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, DraftSync& x) {
  return f(caf::meta::type_name("osd::DraftSync"), x.id, x.known, x.tail, x.params);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, ProposeRequest& x) {
  return f(caf::meta::type_name("osd::ProposeRequest"), x.ids, x.k, x.syncs);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, GenerationRequest& x) {
  return f(caf::meta::type_name("osd::GenerationRequest"), x.prompt, x.sampling, x.max_new_tokens,
           x.eos_ids, x.stop);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, Submission& x) {
  return f(caf::meta::type_name("osd::Submission"), x.id, x.request, x.domain, x.stream, x.submitted_us, x.route,
           x.auto_routed, x.evaluate_routes);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, TokenEvent& x) {
  return f(caf::meta::type_name("osd::TokenEvent"), x.id, x.tokens, x.text);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, SpecStats& x) {
  return f(caf::meta::type_name("osd::SpecStats"), x.num_drafts, x.num_draft_tokens,
           x.num_accepted_tokens, x.num_rounds, x.num_rejected_drafts, x.accepted_per_pos);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, DoneEvent& x) {
  return f(caf::meta::type_name("osd::DoneEvent"), x.id, x.tokens, x.text, x.finish, x.error_code,
           x.error_message, x.stats, x.ttft_ms, x.total_ms, x.route, x.prompt_tokens, x.queue_ms);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, Verdict& x) {
  return f(caf::meta::type_name("osd::Verdict"), x.id, x.k, x.accepted, x.emitted);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, DistillRecord& x) {
  return f(caf::meta::type_name("osd::DistillRecord"), x.context, x.top_ids, x.top_probs, x.tail,
           x.route, x.source, x.greedy, x.prompt);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, DistillBatch& x) {
  return f(caf::meta::type_name("osd::DistillBatch"), x.train, x.heldout);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, RouteOutcome& x) {
  return f(caf::meta::type_name("osd::RouteOutcome"), x.id, x.route, x.acceptance, x.agreement);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, DistillMetrics& x) {
  return f(caf::meta::type_name("osd::DistillMetrics"), x.route, x.version, x.published, x.decision, x.loss,
           x.acceptance_candidate, x.acceptance_current, x.steps, x.discarded_steps);
}
// Weights cross processes as their config and parameters (model_to_bytes / model_from_bytes).
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, WeightsSnapshot& x) {
  std::vector<char> bytes;
  auto save = [&]() -> caf::error {
    bytes = x.model ? model_to_bytes(*x.model) : std::vector<char>{};
    return caf::none;
  };
  auto load = [&]() -> caf::error {
    x.model = bytes.empty() ? nullptr : model_from_bytes(bytes);
    return caf::none;
  };
  return f(caf::meta::type_name("osd::WeightsSnapshot"), caf::meta::save_callback(save), x.version, x.route,
           x.heldout_acceptance, bytes, caf::meta::load_callback(load));
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, Proposals& x) {
  std::vector<char> tokens, probs;  // the tensors' bytes, filled only while (de)serializing
  auto save = [&]() -> caf::error {
    tokens = tensor_to_bytes(x.tokens);
    probs = tensor_to_bytes(x.probs);
    return caf::none;
  };
  auto load = [&]() -> caf::error {
    x.tokens = tensor_from_bytes(tokens);
    x.probs = tensor_from_bytes(probs);
    return caf::none;
  };
  return f(caf::meta::type_name("osd::Proposals"), caf::meta::save_callback(save), x.ids, x.k, x.host_tokens,
           x.seconds, x.start_us, x.draft_steps, x.catch_up_tokens, x.catch_up_seconds, x.draft_version,
           tokens, probs, caf::meta::load_callback(load));
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, RecordSource& x) {
  // The tensors' bytes (logits, or a staged top-k), filled only while (de)serializing.
  std::vector<char> logits, probs, ids;
  auto save = [&]() -> caf::error {
    logits = tensor_to_bytes(x.logits);
    probs = tensor_to_bytes(x.staged.probs);
    ids = tensor_to_bytes(x.staged.ids);
    return caf::none;
  };
  auto load = [&]() -> caf::error {
    x.logits = tensor_from_bytes(logits);
    x.staged.probs = tensor_from_bytes(probs);
    x.staged.ids = tensor_from_bytes(ids);
    return caf::none;
  };
  return f(caf::meta::type_name("osd::RecordSource"), caf::meta::save_callback(save), x.route,
           x.top_k, x.rows, x.seq, x.appended, x.bases, x.drafts, x.sources, x.greedy, x.prompt,
           logits, probs, ids, caf::meta::load_callback(load));
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, RoundMetrics& x) {
  return f(caf::meta::type_name("osd::RoundMetrics"), x.batch, x.draft_tokens, x.accepted, x.emitted,
           x.score_ms, x.wait_ms, x.draft_version);
}

}  // namespace osd

CAF_BEGIN_TYPE_ID_BLOCK(osd, caf::first_custom_type_id)
CAF_ADD_TYPE_ID(osd, (osd::Submission))
CAF_ADD_TYPE_ID(osd, (osd::TokenEvent))
CAF_ADD_TYPE_ID(osd, (osd::DoneEvent))
CAF_ADD_TYPE_ID(osd, (osd::RoundMetrics))
CAF_ADD_TYPE_ID(osd, (osd::Verdict))
CAF_ADD_TYPE_ID(osd, (osd::SamplingParams))
CAF_ADD_TYPE_ID(osd, (osd::Proposals))
CAF_ADD_TYPE_ID(osd, (osd::WeightsSnapshot))
CAF_ADD_TYPE_ID(osd, (osd::DistillBatch))
CAF_ADD_TYPE_ID(osd, (osd::DistillMetrics))
CAF_ADD_TYPE_ID(osd, (osd::DistillRecord))
CAF_ADD_TYPE_ID(osd, (osd::RouteOutcome))
CAF_ADD_TYPE_ID(osd, (osd::RecordSource))
CAF_ADD_TYPE_ID(osd, (osd::DraftSync))
CAF_ADD_TYPE_ID(osd, (osd::ProposeRequest))
CAF_ADD_ATOM(osd, osd, submit_atom, "submit")
CAF_ADD_ATOM(osd, osd, route_atom, "route")
CAF_ADD_ATOM(osd, osd, admit_atom, "admit")
CAF_ADD_ATOM(osd, osd, propose_atom, "propose")
CAF_ADD_ATOM(osd, osd, remove_atom, "remove")
CAF_ADD_ATOM(osd, osd, release_atom, "release")
CAF_ADD_ATOM(osd, osd, cancel_atom, "cancel")
CAF_ADD_ATOM(osd, osd, stats_atom, "stats")
CAF_ADD_ATOM(osd, osd, drain_atom, "drain")
CAF_ADD_ATOM(osd, osd, close_atom, "close")
CAF_ADD_ATOM(osd, osd, trace_atom, "trace")
CAF_ADD_ATOM(osd, osd, round_atom, "round")
CAF_ADD_ATOM(osd, osd, records_atom, "records")
CAF_ADD_ATOM(osd, osd, sample_atom, "sample")
CAF_ADD_ATOM(osd, osd, swap_atom, "swap")
CAF_ADD_ATOM(osd, osd, save_atom, "save")
CAF_ADD_ATOM(osd, osd, score_atom, "score")
CAF_ADD_ATOM(osd, osd, tick_atom, "tick")
CAF_ADD_ATOM(osd, osd, fail_atom, "fail")
CAF_END_TYPE_ID_BLOCK(osd)
