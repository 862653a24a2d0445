// The verifier's admissions, cancels, answers and stats (its rounds: actors/verifier_rounds.cpp).
#include "actors/verifier_state.hpp"

#include <algorithm>

#include "models/distillation/round_records.hpp"

namespace osd {

std::vector<int64_t> VerifierSeq::tokens_so_far() const {
  auto t = sub.request.prompt;
  t.insert(t.end(), stop.tokens().begin(), stop.tokens().end());
  return t;
}

double ms_since(VerifierClock::time_point t) {
  return std::chrono::duration<double, std::milli>(VerifierClock::now() - t).count();
}

double steady_us(VerifierClock::time_point t) {
  return std::chrono::duration<double, std::micro>(t.time_since_epoch()).count();
}

void trace_span(VerifierState& st, const std::string& name, const std::string& track, double ts_us,
                double dur_us, nlohmann::json args) {
  if (!st.opt.trace || st.trace.size() >= 200000) return;
  st.trace.push_back({{"name", name}, {"ph", "X"}, {"pid", 1}, {"tid", track}, {"ts", ts_us},
                      {"dur", dur_us}, {"args", std::move(args)}});
}

// A request's final answer. With an intake it travels through it: the intake frees the id and
// then forwards the answer, so a client that reuses an id once it has its answer never finds the
// id still in flight (messages from two senders have no order; this path gives one).
void answer(VerifierActor* self, const caf::actor& sink, DoneEvent done) {
  auto& st = self->state;
  if (st.intake)
    self->send(st.intake, release_atom_v, std::move(done), sink);
  else
    self->send(sink, std::move(done));
}

namespace {

// Tell the router how its automatic choice went; for sampled requests first score the finished
// text with every route's draft (each drafter answers between its proposals).
void report_outcome(VerifierActor* self, const VerifierSeq& s) {
  auto& st = self->state;
  RouteOutcome o;
  o.id = s.sub.id;
  o.route = s.route;
  o.acceptance = s.stats.acceptance_rate();
  const int64_t R = static_cast<int64_t>(st.routes.size());
  if (!s.sub.evaluate_routes || R < 2 || s.stop.tokens().empty()) {
    self->send(st.router, std::move(o));
    return;
  }
  auto pending = std::make_shared<RouteOutcome>(std::move(o));
  pending->agreement.assign(R, 0.0);
  auto left = std::make_shared<int64_t>(R);
  auto router = st.router;
  const auto tokens = s.tokens_so_far();
  const int64_t from = static_cast<int64_t>(s.sub.request.prompt.size());
  for (int64_t r = 0; r < R; ++r) {
    auto done_one = [=](double a) {
      pending->agreement[r] = a;
      if (--*left == 0) self->send(router, std::move(*pending));
    };
    self->request(st.routes[r].drafter, std::chrono::seconds(60), score_atom_v, tokens, from)
        .then([=](double a) { done_one(a); }, [=](caf::error&) { done_one(-1.0); });
  }
}

// Moves waiting submissions into free slots; their prompts are prefilled in chunks (prefill_some).
void admit_waiting(VerifierActor* self) {
  auto& st = self->state;
  while (!st.waiting.empty() && st.scorer->free_slots() > 0) {
    auto [sub, sink] = std::move(st.waiting.front());
    st.waiting.pop_front();
    const SeqId sid = st.next_sid++;
    const int64_t R = static_cast<int64_t>(st.routes.size());
    const int64_t route = st.speculative && sub.route >= 0 && sub.route < R ? sub.route : 0;
    try {
      st.scorer->begin(sid, sub.request.prompt);
    } catch (const std::exception& e) {
      answer(self, sink, DoneEvent{sub.id, {}, "", "error", "invalid_request", e.what(), {}, 0, 0});
      continue;
    }
    VerifierSeq s{sub, sink,
                  StopChecker(sub.request, st.opt.text_stream ? st.opt.text_stream(sub.request.prompt)
                                                              : st.opt.token_text)};
    s.route = route;
    if (sub.submitted_us > 0)  // latencies count from submission, queueing included
      s.start = VerifierClock::time_point(std::chrono::duration_cast<VerifierClock::duration>(
          std::chrono::duration<double, std::micro>(sub.submitted_us)));
    st.by_id[sub.id] = sid;
    st.seqs.emplace(sid, std::move(s));
    st.scheduler->add(sid, route);
    st.prefilling.push_back(sid);
  }
}

// Runs up to prefill_chunk prompt tokens of the admitted requests, oldest first.
void prefill_some(VerifierActor* self) {
  auto& st = self->state;
  int64_t budget = st.opt.prefill_chunk > 0 ? st.opt.prefill_chunk : INT64_MAX;
  while (!st.prefilling.empty() && budget > 0) {
    const SeqId sid = st.prefilling.front();
    auto it = st.seqs.find(sid);
    if (it == st.seqs.end()) {
      st.prefilling.pop_front();
      continue;
    }
    auto& s = it->second;
    const int64_t before = st.scorer->unprefilled(sid);
    const auto& prompt = s.sub.request.prompt;
    const bool record = st.speculative && st.opt.record_prompt_positions > 0 &&
                        st.routes[s.route].buffer && prompt.size() >= 2;
    const auto p0 = VerifierClock::now();
    const size_t span = st.timeline->begin();
    at::Tensor logits;  // [m, V] when the prompt's last chunk ran and its records are wanted
    int64_t left = 0;
    try {
      left = st.scorer->prefill(sid, budget, record ? &logits : nullptr, st.opt.record_prompt_positions);
    } catch (const std::exception& e) {
      st.prefilling.pop_front();
      finish_seq(self, sid, FinishReason::error, "invalid_request", e.what());
      continue;
    }
    const int64_t ran = before - left;
    budget -= std::max<int64_t>(ran, 1);
    if (st.opt.trace) {
      st.timeline->end(span, "prefill", "{\"tokens\":" + std::to_string(ran) + "}");
      trace_span(st, "prefill", "verifier", steady_us(p0), ms_since(p0) * 1e3, {{"tokens", ran}});
    }
    if (logits.defined() && logits.size(0) > 0)
      s.prompt_records = prompt_records(s.route, sid, prompt, logits, st.opt.record_top_k,
                                        s.sub.request.sampling.greedy());
    if (left == 0) st.prefilling.pop_front();
  }
}

bool ready(const VerifierState& st, const VerifierSeq& s, SeqId sid) {
  return !s.in_round && !s.cancelled && st.scorer->unprefilled(sid) == 0;
}

}  // namespace

void pump(VerifierActor* self) {
  auto& st = self->state;
  st.stream->make_current();
  admit_waiting(self);
  prefill_some(self);
  for (size_t r = 0; r < st.routes.size(); ++r) {
    auto& route = st.routes[r];
    if (route.round_queued) continue;
    bool any = false;
    for (const auto& [sid, s] : st.seqs)
      if (s.route == static_cast<int64_t>(r) && ready(st, s, sid)) {
        any = true;
        break;
      }
    if (!any) continue;
    route.round_queued = true;  // rounds run from the mailbox: admissions and cancels interleave
    self->send(self, round_atom_v, static_cast<int64_t>(r));
  }
  if (!st.prefilling.empty() && !st.tick_queued) {
    st.tick_queued = true;  // more prompt to run: continue after what the mailbox holds
    self->send(self, tick_atom_v);
  }
}

void finish_seq(VerifierActor* self, SeqId sid, FinishReason reason, const std::string& code,
                const std::string& message) {
  auto& st = self->state;
  auto it = st.seqs.find(sid);
  if (it == st.seqs.end()) return;
  VerifierSeq& s = it->second;
  DoneEvent done{s.sub.id, s.stop.tokens(), s.stop.text(), finish_reason_name(reason), code, message,
                 s.stats, std::max(0.0, s.ttft_ms), ms_since(s.start),
                 st.speculative ? st.routes[s.route].name : ""};
  if (st.metrics) self->send(st.metrics, done);
  if (st.router && s.sub.auto_routed && reason != FinishReason::error) report_outcome(self, s);
  answer(self, s.sink, std::move(done));
  st.scorer->remove(sid);
  st.scheduler->remove(sid);
  if (s.drafter_knows) {
    self->send(st.routes[s.route].drafter, remove_atom_v, sid);
    ++st.drafter_messages;
  }
  st.by_id.erase(s.sub.id);
  st.seqs.erase(it);
}

void cancel_request(VerifierActor* self, const RequestId& id) {
  auto& st = self->state;
  auto cancelled = [](const RequestId& rid) { return DoneEvent{rid, {}, "", "cancelled", "", "", {}, 0, 0}; };
  if (id == "*") {  // shutdown without finishing: cancel everything
    for (auto& w : st.waiting) answer(self, w.second, cancelled(w.first.id));
    st.waiting.clear();
    std::vector<SeqId> idle;
    for (auto& [sid, s] : st.seqs) {
      s.cancelled = true;
      if (!s.in_round) idle.push_back(sid);
    }
    for (auto sid : idle) finish_seq(self, sid, FinishReason::cancelled);
    return;
  }
  for (auto it = st.waiting.begin(); it != st.waiting.end(); ++it)
    if (it->first.id == id) {
      answer(self, it->second, cancelled(id));
      st.waiting.erase(it);
      return;
    }
  auto f = st.by_id.find(id);
  if (f == st.by_id.end()) {
    if (st.early_cancels.size() > 10000) st.early_cancels.clear();
    st.early_cancels.insert(id);
    return;
  }
  VerifierSeq& s = st.seqs.at(f->second);
  s.cancelled = true;
  if (!s.in_round) finish_seq(self, f->second, FinishReason::cancelled);
}

// A new drafter for a route: it knows no sequence, so each learns its tokens again (DraftSync)
// at its next proposal.
void restart_drafter(VerifierActor* self, int64_t r) {
  auto& st = self->state;
  auto& route = st.routes[r];
  route.drafter = st.opt.drafter_factory(r, route.latest, route.version);
  self->monitor(route.drafter);
  self->link_to(route.drafter);
  st.drafters.insert(route.drafter.address());
  ++route.generation;
  ++st.drafter_restarts;
  for (auto& [sid, s] : st.seqs)
    if (s.route == r) s.drafter_knows = false, s.draft_known = 0;
}

std::string verifier_stats(VerifierActor* self) {
  auto& s = self->state;
  const double total = ms_since(s.started);
  const auto& sched = s.scheduler->stats();
  nlohmann::json j = {{"in_flight", s.seqs.size()},
                      {"waiting", s.waiting.size()},
                      {"prefilling", s.prefilling.size()},
                      {"verifier_busy_ms", s.busy_ms},
                      {"verifier_idle_fraction", total > 0 ? 1.0 - s.busy_ms / total : 0.0},
                      {"record_host_ms", s.record_host_ms},
                      {"target_graphs", s.scorer->graphs_captured()},
                      {"target_graph_capture_ms", s.scorer->graph_capture_ms()},
                      {"records_sent", s.records_sent},
                      {"drafter_restarts", s.drafter_restarts},
                      {"drafter_messages", s.drafter_messages},
                      {"round_recoveries", s.round_recoveries},
                      {"draft_version", s.routes.empty() ? 0 : s.routes[0].version},
                      {"scheduler",
                       {{"k_rows", sched.k_rows},
                        {"rounds", sched.rounds},
                        {"rounds_all_k0", sched.rounds_all_k0},
                        {"probes", sched.probes},
                        {"cohort_splits", sched.splits}}}};
  nlohmann::json routes = nlohmann::json::array();
  for (size_t r = 0; r < s.routes.size() && s.speculative; ++r) {
    int64_t live = 0;
    for (const auto& [sid, seq] : s.seqs) live += seq.route == static_cast<int64_t>(r);
    routes.push_back({{"name", s.routes[r].name},
                      {"draft_version", s.routes[r].version},
                      {"in_flight", live},
                      {"alpha", s.scheduler->route_alpha(static_cast<int64_t>(r))},
                      {"drafter_generation", s.routes[r].generation}});
  }
  j["routes"] = routes;
  // What the planner prices a round at, by batch size (ms, measured or estimated).
  const auto& costs = s.scheduler->costs();
  nlohmann::json table = nlohmann::json::object();
  for (int64_t b : {1, 2, 4, 8, 16, 32, 64}) {
    table["batch " + std::to_string(b)] = {{"verify_ms_by_k", costs.verify_table(b)},
                                           {"draft_step_ms", costs.draft_step_ms(b)}};
  }
  table["hops_ms"] = costs.hops_ms();
  j["round_costs"] = table;
  return j.dump();
}

}  // namespace osd
