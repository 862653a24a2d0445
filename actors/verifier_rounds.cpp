// The verifier's rounds: plan -> propose (rows that draft) -> verify -> records, stream, finish.
#include <algorithm>

#include "actors/verifier_state.hpp"
#include "models/distillation/round_records.hpp"
#include "models/speculation/spec_round.hpp"

namespace osd {

namespace {

void verify_round(VerifierActor* self, int64_t route, const Proposals& prop);

// What a round's failure leaves: its sequences are rebuilt in the target's cache from their
// tokens so far and learn them again at the drafter; each counts a failure and runs alone next;
// one that keeps failing gets an error, so a bad request fails alone.
void round_failed(VerifierActor* self, const std::vector<SeqId>& ids, const std::string& code,
                  const std::string& message) {
  auto& st = self->state;
  ++st.round_recoveries;
  for (auto sid : ids) {
    auto it = st.seqs.find(sid);
    if (it == st.seqs.end()) continue;
    auto& s = it->second;
    s.in_round = false;
    s.draft_known = 0;
    if (++s.failures > st.opt.max_round_retries || s.cancelled) {
      finish_seq(self, sid, s.cancelled ? FinishReason::cancelled : FinishReason::error, code, message);
      continue;
    }
    try {
      st.scorer->remove(sid);
      st.scorer->add(sid, s.tokens_so_far());
    } catch (const std::exception& e) {
      finish_seq(self, sid, FinishReason::error, code, e.what());
    }
  }
}

// The most draft tokens a sequence may take now: never past max_new_tokens, nor past the target's
// or the draft's context.
int64_t draft_cap(const VerifierState& st, const VerifierSeq& s, SeqId sid) {
  if (!st.speculative) return 0;
  const int64_t len = static_cast<int64_t>(s.sub.request.prompt.size() + s.stop.tokens().size());
  const int64_t draft_room = (st.opt.draft_context > 0 ? st.opt.draft_context : st.opt.max_len) - len + 1;
  return std::max<int64_t>(0, std::min({s.stop.remaining() - 1, st.scorer->room(sid), draft_room}));
}

// Sends a round's drafting rows to the route's drafter, each with what it has not seen of them.
void propose(VerifierActor* self, int64_t route, std::vector<SeqId> ids, std::vector<int64_t> ks) {
  auto& st = self->state;
  auto& r = st.routes[route];
  ProposeRequest req{ids, ks, {}};
  for (size_t i = 0; i < ids.size(); ++i) {
    auto& s = st.seqs.at(ids[i]);
    s.in_round = true;
    if (ks[i] == 0) continue;
    auto tokens = s.tokens_so_far();
    const int64_t known = s.drafter_knows ? s.draft_known : 0;
    req.syncs.push_back({ids[i], known, std::vector<int64_t>(tokens.begin() + known, tokens.end()),
                         s.sub.request.sampling});
    s.drafter_knows = true;
    s.draft_known = static_cast<int64_t>(tokens.size());  // until the verdict says otherwise
  }
  const int64_t id = st.next_round++;
  DraftingRound round{route, ids, ks, VerifierClock::now(), st.drafting.empty(), r.generation};
  st.drafting.emplace(id, std::move(round));
  ++r.in_flight;
  ++st.drafter_messages;
  self->request(r.drafter, caf::infinite, propose_atom_v, std::move(req))
      .then(
          [=](const Proposals& prop) {
            auto& s2 = self->state;
            auto node = s2.drafting.extract(id);
            --s2.routes[route].in_flight;
            const auto& d = node.mapped();
            const double reply_ms = ms_since(d.asked);
            if (d.alone && prop.draft_steps > 0)  // the wait beyond drafting: the round trip
              s2.scheduler->observe_hops(std::max(0.0, reply_ms - prop.seconds * 1e3));
            s2.stream->make_current();
            // The drafter's stream finished the proposal before this stream reads it (GPU-side).
            s2.stream->wait(prop.ready.get(), {prop.tokens, prop.probs});
            verify_round(self, route, prop);
            pump(self);
          },
          [=](caf::error& err) {
            auto& s2 = self->state;
            auto node = s2.drafting.extract(id);
            --s2.routes[route].in_flight;
            const auto& d = node.mapped();
            // The drafter failed: respawn it once per failure; the rows run again after it learns
            // them anew, or, without a factory, get the error.
            if (s2.opt.drafter_factory && d.generation == s2.routes[route].generation)
              restart_drafter(self, route);
            for (auto sid : d.ids) {
              auto it = s2.seqs.find(sid);
              if (it == s2.seqs.end()) continue;
              auto& s = it->second;
              s.in_round = false;  // the target's cache is untouched: the rows just run again
              if (!s2.opt.drafter_factory || s.cancelled || ++s.failures > s2.opt.max_round_retries)
                finish_seq(self, sid, s.cancelled ? FinishReason::cancelled : FinishReason::error,
                           "drafter_failed", self->system().render(err));
            }
            pump(self);
          });
}

// After the verdicts: the records of the round for the route's buffer.
void send_records(VerifierActor* self, int64_t route, const Proposals& prop, const SpecRound& round,
                  const std::vector<VerifierSeq*>& rows) {
  auto& st = self->state;
  const auto r0 = VerifierClock::now();
  std::vector<RecordedRow> recorded;
  for (size_t i = 0; i < rows.size(); ++i) {
    auto& s = *rows[i];
    const auto& v = round.verified.verdicts[i];
    const bool plain = v.k == 0 && st.opt.record_plain_every > 0 &&
                       ++s.plain_since_record >= st.opt.record_plain_every;
    if (plain) s.plain_since_record = 0;
    recorded.push_back({prop.ids[i], s.tokens_so_far(), prop.host_tokens[i], v.accepted,
                        s.sub.request.sampling.greedy(), plain});
  }
  auto src = round_records(route, recorded, round.logits_copy, round.logits.size(1),
                           st.opt.record_all_positions, st.opt.record_top_k);
  if (!src.rows.empty()) {
    st.records_sent += static_cast<int64_t>(src.rows.size());
    self->send(st.routes[route].buffer, records_atom_v, std::move(src));
  }
  st.record_host_ms += ms_since(r0);
}

// One row's verdict: statistics, its stream of tokens, whether it is done. Returns true when done.
bool apply_verdict(VerifierActor* self, VerifierSeq& s, const Verdict& v, RoundMetrics& rm) {
  auto& st = self->state;
  s.stats.record(v);
  s.failures = 0;
  if (v.k > 0) {
    st.scheduler->observe(v.id, v.k, v.accepted);
    s.draft_known = static_cast<int64_t>(s.sub.request.prompt.size() + s.stop.tokens().size()) + v.accepted;
  }
  rm.draft_tokens += v.k;
  rm.accepted += v.accepted;
  const size_t before_text = s.stop.text().size();
  const size_t kept = s.stop.feed(v.emitted);
  rm.emitted += static_cast<int64_t>(kept);
  if (kept > 0) {
    if (s.ttft_ms < 0) s.ttft_ms = ms_since(s.start);
    if (s.sub.stream)
      self->send(s.sink, TokenEvent{s.sub.id, std::vector<int64_t>(v.emitted.begin(), v.emitted.begin() + kept),
                                    s.stop.text().substr(std::min(before_text, s.stop.text().size()))});
  }
  return s.stop.finished() != FinishReason::none || s.cancelled;
}

void verify_round(VerifierActor* self, int64_t route, const Proposals& prop_in) {
  auto& st = self->state;
  const auto t0 = VerifierClock::now();
  // Rows cancelled or finished while the proposal was on its way are dropped from the round.
  Proposals prop = prop_in;
  std::vector<VerifierSeq*> rows;
  std::vector<SamplingParams> params;
  std::vector<size_t> keep;
  for (size_t i = 0; i < prop.ids.size(); ++i) {
    auto it = st.seqs.find(prop.ids[i]);
    if (it == st.seqs.end()) continue;
    it->second.in_round = false;
    keep.push_back(i);
  }
  if (keep.size() != prop.ids.size()) prop = prop.select(keep);
  for (auto sid : prop.ids) rows.push_back(&st.seqs.at(sid)), params.push_back(rows.back()->sub.request.sampling);
  if (prop.ids.empty()) return;
  const int64_t B = static_cast<int64_t>(prop.ids.size());
  const bool record = st.speculative && st.routes[route].buffer;
  const size_t span = st.timeline->begin();
  SpecRound round;
  try {
    if (++st.rounds == st.opt.fail_on_round) throw std::runtime_error("injected verifier failure");
    round = run_spec_round(*st.scorer, prop, params, record);
  } catch (const std::exception& e) {
    round_failed(self, prop.ids, "internal", e.what());
    return;
  }
  const double verify_ms = ms_since(t0);
  for (auto* s : rows)  // their prefill was queued before this sync: its logits are complete
    if (s->prompt_records) {
      st.records_sent += static_cast<int64_t>(s->prompt_records->rows.size());
      self->send(st.routes[s->route].buffer, records_atom_v, std::move(*s->prompt_records));
      s->prompt_records.reset();
    }
  const int64_t K = round.logits.size(1) - 1;
  st.timeline->end(span, "verify", "{\"batch\":" + std::to_string(B) + ",\"k\":" + std::to_string(K) + "}");
  if (record) send_records(self, route, prop, round, rows);
  RoundMetrics rm;
  rm.batch = B;
  std::vector<std::pair<SeqId, FinishReason>> done;
  std::vector<std::pair<SeqId, std::string>> failed;
  for (int64_t i = 0; i < B; ++i) {
    auto& s = *rows[i];
    try {
      if (apply_verdict(self, s, round.verified.verdicts[i], rm))
        done.emplace_back(prop.ids[i], s.cancelled ? FinishReason::cancelled : s.stop.finished());
    } catch (const std::exception& e) {  // this request's text or stop strings: it fails alone
      failed.emplace_back(prop.ids[i], e.what());
    }
  }
  for (auto [sid, reason] : done) finish_seq(self, sid, reason);
  for (auto& [sid, message] : failed) finish_seq(self, sid, FinishReason::error, "internal", message);
  rm.score_ms = ms_since(t0);
  rm.draft_version = prop.draft_version;
  st.busy_ms += rm.score_ms;
  if (!round.captured_graph) {  // a capture's time is not a step's
    st.scheduler->observe_verify(B, K, verify_ms);
    const int64_t drafting = std::count_if(prop.k.begin(), prop.k.end(), [](int64_t k) { return k > 0; });
    // A catch-up prefill is priced per token, apart from the steps.
    const int64_t steps = prop.draft_steps - (prop.catch_up_tokens > 0 ? 1 : 0);
    if (steps > 0)
      st.scheduler->observe_draft_step(drafting, (prop.seconds - prop.catch_up_seconds) * 1e3 / steps);
    if (prop.catch_up_tokens > 0) st.scheduler->observe_catch_up(prop.catch_up_tokens, prop.catch_up_seconds * 1e3);
  }
  if (st.opt.trace) {
    if (prop.draft_steps > 0)
      trace_span(st, "propose g" + std::to_string(route), "drafter", prop.start_us, prop.seconds * 1e6,
                 {{"batch", B}, {"steps", prop.draft_steps}});
    trace_span(st, "verify g" + std::to_string(route), "verifier", steady_us(t0), rm.score_ms * 1e3,
               {{"batch", B}, {"draft_tokens", rm.draft_tokens}, {"accepted", rm.accepted}});
  }
  if (st.metrics) self->send(st.metrics, rm);
}

}  // namespace

void run_round(VerifierActor* self, int64_t route) {
  auto& st = self->state;
  auto& r = st.routes[route];
  r.round_queued = false;
  st.stream->make_current();
  // The route's ready rows; a row that failed before runs alone, and one whose context is full
  // finishes (its length is the context's).
  std::vector<SeqId> ids, solo;
  std::vector<int64_t> caps, lags;
  std::vector<SeqId> full;
  for (auto& [sid, s] : st.seqs) {
    if (s.route != route || s.in_round || st.scorer->unprefilled(sid) > 0) continue;
    if (s.cancelled) continue;
    if (st.scorer->room(sid) < 0) {
      full.push_back(sid);
      continue;
    }
    (s.failures > 0 ? solo : ids).push_back(sid);
  }
  for (auto sid : full) finish_seq(self, sid, FinishReason::length);
  if (!solo.empty()) ids = {solo.front()};
  if (ids.empty()) return;
  for (auto sid : ids) {
    const auto& s = st.seqs.at(sid);
    caps.push_back(draft_cap(st, s, sid));
    // What the drafter must run before it drafts, beyond the chunk a step takes anyway.
    const int64_t len = static_cast<int64_t>(s.sub.request.prompt.size() + s.stop.tokens().size());
    lags.push_back(std::max<int64_t>(0, len - (s.drafter_knows ? s.draft_known : 0) - 2));
  }
  const size_t n = solo.empty() ? st.scheduler->cohort_size(route, ids, caps, lags, r.in_flight) : 1;
  ids.resize(n), caps.resize(n), lags.resize(n);
  auto plan = st.scheduler->plan(route, ids, caps, lags);
  if (plan.K > 0) return propose(self, route, std::move(ids), std::move(plan.k));
  // Every row at k = 0: a plain decode step on the target's graphed path, no drafter involved.
  auto prop = Proposals::none(ids, plan.k, st.target->config().vocab_size, st.target->device());
  if (st.speculative) prop.draft_version = r.version;
  verify_round(self, route, prop);
}

}  // namespace osd
