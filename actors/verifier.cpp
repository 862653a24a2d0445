#include "actors/verifier.hpp"

#include <chrono>
#include <deque>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>

#include "actors/messages.hpp"
#include "models/speculation/adaptive_k.hpp"
#include "models/core/device_stream.hpp"
#include "models/distillation/distill_buffer.hpp"
#include "models/speculation/rejection_sampler.hpp"
#include "models/speculation/scorer.hpp"
#include "models/speculation/stop_conditions.hpp"
#include "models/common/log.hpp"

namespace osd {

namespace {

using Clock = std::chrono::steady_clock;
double ms_since(Clock::time_point t) { return std::chrono::duration<double, std::milli>(Clock::now() - t).count(); }

struct Seq {
  Submission sub;
  caf::actor sink;
  RequestRng rng;
  StopChecker stop;
  AcceptanceEstimator estimator;
  SpecStats stats;
  size_t group = 0;
  int64_t route = 0;
  bool cancelled = false;
  Clock::time_point start = Clock::now();
  double ttft_ms = -1;
  // The prompt's records (VerifierOptions::record_prompt_positions): the prefill's logits, kept
  // at admission and sent after the first round's host sync, which completes them.
  std::optional<RecordSource> prompt_records;
};

struct Group {
  std::vector<SeqId> members;
  int64_t route = 0;  // a group's sequences share one draft route (one drafter per round)
  bool busy = false;
  Clock::time_point round_start;  // when its current round asked its drafter (for the hops)
  double reply_ms = 0;            // ... and how long the proposal took to arrive
  bool alone = false;             // no other group's round was running when it asked
};

// One draft route: its drafter, its share of the distillation buffer, its newest weights.
struct Route {
  std::string name;
  caf::actor drafter, buffer;
  std::shared_ptr<const Transformer> latest;  // the newest snapshot (for restarts)
  int64_t version = 0;
  int64_t generation = 0;  // bumped at every restart of this route's drafter
};

struct VerifierState {
  std::unique_ptr<ActorStream> stream;  // first: destroyed after the tensors made on it
  std::unique_ptr<TargetScorer> scorer;
  std::unique_ptr<GpuTimeline> timeline;  // GPU spans of its rounds (opt.trace)
  std::shared_ptr<Transformer> target;
  caf::actor intake, metrics, router;
  std::vector<Route> routes;
  bool speculative = false;  // routes have drafters (false: target-only decoding)
  VerifierOptions opt;
  std::map<SeqId, Seq> seqs;
  std::map<RequestId, SeqId> by_id;
  std::deque<std::pair<Submission, caf::actor>> waiting;
  std::set<RequestId> early_cancels;  // cancels that overtook their submission (bounded)
  std::vector<Group> groups;
  SeqId next_sid = 1;
  int64_t rounds = 0;
  int64_t drafter_restarts = 0, round_recoveries = 0;
  std::vector<int64_t> group_failures;
  std::set<caf::actor_addr> drafters;  // every drafter this verifier used (linked)
  nlohmann::json trace = nlohmann::json::array();  // Chrome trace events (opt.trace)
  RoundCosts costs;                                // measured round costs: adaptive k's prices
  double cost_ratio = 0.1;  // c as draft step / verification round (the formula's chooser)
  double record_host_ms = 0;  // host time spent staging and building distillation records
  int64_t records_sent = 0;
  int64_t busy_groups = 0;
  Clock::time_point idle_since = Clock::now(), started = Clock::now();
  double busy_ms = 0, idle_ms = 0;
  static inline const char* name = "osd.verifier";
};

using Self = caf::stateful_actor<VerifierState>;

void start_rounds(Self* self);

std::vector<int64_t> tokens_so_far(const Seq& s) {
  auto t = s.sub.request.prompt;
  t.insert(t.end(), s.stop.tokens().begin(), s.stop.tokens().end());
  return t;
}

// The steady clock's time in microseconds, as the trace's spans and the GPU tracks count it.
double steady_us(Clock::time_point t) {
  return std::chrono::duration<double, std::micro>(t.time_since_epoch()).count();
}

// A host span on the verifier's Chrome trace (opt.trace; at most 200,000 of them).
void trace_span(VerifierState& st, const std::string& name, const std::string& track, double ts_us,
                double dur_us, nlohmann::json args) {
  if (!st.opt.trace || st.trace.size() >= 200000) return;
  st.trace.push_back({{"name", name},
                      {"ph", "X"},
                      {"pid", 1},
                      {"tid", track},
                      {"ts", ts_us},
                      {"dur", dur_us},
                      {"args", std::move(args)}});
}

// Tell the router how its automatic choice went; for sampled requests first score the finished
// text with every route's draft (each drafter answers between its proposals).
void report_outcome(Self* self, const Seq& s) {
  auto& st = self->state;
  RouteOutcome o;
  o.id = s.sub.id;
  o.route = s.route;
  o.acceptance = s.stats.num_draft_tokens > 0 ? double(s.stats.num_accepted_tokens) / s.stats.num_draft_tokens : 0.0;
  const int64_t R = static_cast<int64_t>(st.routes.size());
  if (!s.sub.evaluate_routes || R < 2 || s.stop.tokens().empty()) {
    self->send(st.router, std::move(o));
    return;
  }
  auto pending = std::make_shared<RouteOutcome>(std::move(o));
  pending->agreement.assign(R, 0.0);
  auto left = std::make_shared<int64_t>(R);
  auto router = st.router;
  const auto tokens = tokens_so_far(s);
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

// A request's final answer. With an intake it travels through it: the intake frees the id and
// then forwards the answer, so a client that reuses an id once it has its answer never finds the
// id still in flight (messages from two senders have no order; this path gives one).
void answer(Self* self, const caf::actor& sink, DoneEvent done) {
  auto& st = self->state;
  if (st.intake)
    self->send(st.intake, release_atom_v, std::move(done), sink);
  else
    self->send(sink, std::move(done));
}

void finish_seq(Self* self, SeqId sid, const std::string& finish, const std::string& code = "",
                const std::string& message = "") {
  auto& st = self->state;
  auto it = st.seqs.find(sid);
  if (it == st.seqs.end()) return;
  Seq& s = it->second;
  DoneEvent done{s.sub.id, s.stop.tokens(), s.stop.text(), finish, code, message, s.stats,
                 std::max(0.0, s.ttft_ms), ms_since(s.start), st.speculative ? st.routes[s.route].name : ""};
  if (st.metrics) self->send(st.metrics, done);
  if (st.router && s.sub.auto_routed && finish != "error") report_outcome(self, s);
  answer(self, s.sink, std::move(done));
  st.scorer->remove(sid);
  if (st.speculative) self->send(st.routes[s.route].drafter, remove_atom_v, sid);
  auto& members = st.groups[s.group].members;
  members.erase(std::remove(members.begin(), members.end(), sid), members.end());
  st.by_id.erase(s.sub.id);
  st.seqs.erase(it);
}

// The records of a prompt's last m positions from the prefill's logits [m, V]: row j is the
// target's distribution after prompt[0 .. P - m + j), as base = prompt[0 .. P - m) plus j of the
// following tokens. Sent after the request's first round synchronised the stream, so the
// prefill's logits are complete; the buffer takes their top-k.
RecordSource prompt_record_source(const std::vector<int64_t>& prompt, const at::Tensor& logits,
                                  int64_t top_k, int64_t route, SeqId sid, bool greedy) {
  const int64_t P = static_cast<int64_t>(prompt.size()), m = logits.size(0);
  RecordSource src;
  src.route = route;
  src.prompt = true;
  src.bases.emplace_back(prompt.begin(), prompt.begin() + (P - m));
  src.drafts.emplace_back(prompt.begin() + (P - m), prompt.end() - 1);
  src.sources.push_back(sid);
  src.greedy.push_back(greedy);
  for (int64_t j = 0; j < m; ++j) {
    src.rows.push_back(j);
    src.seq.push_back(0);
    src.appended.push_back(j);
  }
  src.logits = logits;
  src.top_k = top_k;
  return src;
}

// Admit waiting submissions into free slots, joining the smallest idle group.
void admit_waiting(Self* self) {
  auto& st = self->state;
  st.stream->make_current();
  while (!st.waiting.empty() && st.scorer->free_slots() > 0) {
    auto [sub, sink] = std::move(st.waiting.front());
    st.waiting.pop_front();
    const SeqId sid = st.next_sid++;
    const auto p0 = Clock::now();
    const size_t span = st.timeline->begin();
    const int64_t route =
        st.speculative && sub.route >= 0 && sub.route < static_cast<int64_t>(st.routes.size())
            ? sub.route
            : 0;
    const bool record_prompt = st.speculative && st.opt.record_prompt_positions > 0 &&
                               st.routes[route].buffer && sub.request.prompt.size() >= 2;
    at::Tensor prompt_logits;  // [m, V]
    try {
      st.scorer->add(sid, sub.request.prompt, record_prompt ? &prompt_logits : nullptr,
                     st.opt.record_prompt_positions);
    } catch (const std::exception& e) {
      answer(self, sink, DoneEvent{sub.id, {}, "", "error", "invalid_request", e.what(), {}, 0, 0});
      continue;
    }
    if (st.opt.trace) {
      const auto tokens = static_cast<int64_t>(sub.request.prompt.size());
      st.timeline->end(span, "prefill", "{\"tokens\":" + std::to_string(tokens) + "}");
      trace_span(st, "prefill", "verifier", steady_us(p0), ms_since(p0) * 1e3,
                 {{"tokens", tokens}});
    }
    if (st.speculative) self->send(st.routes[route].drafter, add_atom_v, sid, sub.request.prompt, sub.request.sampling);
    // The least loaded group of the route (busy groups count as full).
    size_t g = st.groups.size();
    auto load = [&](size_t j) { return st.groups[j].members.size() + (st.groups[j].busy ? 1000 : 0); };
    for (size_t i = 0; i < st.groups.size(); ++i)
      if (st.groups[i].route == route && (g == st.groups.size() || load(i) < load(g))) g = i;
    Seq s{sub, sink, RequestRng(sub.request.sampling.seed), StopChecker(sub.request, st.opt.text_stream ? st.opt.text_stream(sub.request.prompt) : st.opt.token_text), AcceptanceEstimator(), {}, g, route};
    if (sub.submitted_us > 0)  // latencies count from submission, queueing included
      s.start = Clock::time_point(std::chrono::duration_cast<Clock::duration>(
          std::chrono::duration<double, std::micro>(sub.submitted_us)));
    if (record_prompt && prompt_logits.defined() && prompt_logits.size(0) > 0)
      s.prompt_records =
          prompt_record_source(sub.request.prompt, prompt_logits, st.opt.record_top_k, route, sid,
                               sub.request.sampling.temperature <= 0);
    st.by_id[sub.id] = sid;
    st.seqs.emplace(sid, std::move(s));
    st.groups[g].members.push_back(sid);
  }
}

// A new drafter for a route, rebuilt from what the verifier knows: the tokens so far of every
// live sequence of that route.
void restart_drafter(Self* self, int64_t r) {
  auto& st = self->state;
  auto& route = st.routes[r];
  route.drafter = st.opt.drafter_factory(r, route.latest, route.version);
  self->monitor(route.drafter);
  self->link_to(route.drafter);
  st.drafters.insert(route.drafter.address());
  ++route.generation;
  ++st.drafter_restarts;
  for (auto& [sid, seq] : st.seqs)
    if (seq.route == r) self->send(route.drafter, add_atom_v, sid, tokens_so_far(seq), seq.sub.request.sampling);
}

// A round threw: rebuild its sequences in both caches from their tokens so far.
void rebuild(Self* self, const std::vector<SeqId>& ids) {
  auto& st = self->state;
  ++st.round_recoveries;
  for (auto sid : ids) {
    auto it = st.seqs.find(sid);
    if (it == st.seqs.end()) continue;
    auto tokens = tokens_so_far(it->second);
    st.scorer->remove(sid);
    st.scorer->add(sid, tokens);
    if (st.speculative) {
      const auto& d = st.routes[it->second.route].drafter;
      self->send(d, remove_atom_v, sid);
      self->send(d, add_atom_v, sid, tokens, it->second.sub.request.sampling);
    }
  }
}

// The group's round failed: retry it, or after too many failures answer its requests.
void round_failed(Self* self, size_t g, const std::string& code, const std::string& message) {
  auto& st = self->state;
  st.groups[g].busy = false;
  --st.busy_groups;
  if (++st.group_failures[g] > st.opt.max_round_retries) {
    st.group_failures[g] = 0;
    for (auto sid : std::vector<SeqId>(st.groups[g].members)) finish_seq(self, sid, "error", code, message);
  }
  if (st.busy_groups == 0) st.idle_since = Clock::now();
}

// The target's distributions at verified positions go to the buffer: the logits are the ones
// this round already computed (no extra target pass). Position j's context is the sequence so
// far plus the first j draft tokens; the buffer takes the top-k and builds the records
// (make_records), so the round only copies its logits on the device and each sequence's tokens.
void send_records(Self* self, int64_t route, const caf::actor& buffer, const Proposals& prop,
                  at::Tensor logits, int64_t K1, const std::vector<int64_t>& accepted,
                  const std::vector<Seq*>& rows) {
  auto& st = self->state;
  RecordSource src;
  src.route = route;
  for (size_t i = 0; i < rows.size(); ++i) {
    const int64_t k = prop.k[i], n = accepted[i];
    if (k == 0) continue;
    const int64_t from = st.opt.record_all_positions ? 0 : n, to = n;  // inclusive
    if (!st.opt.record_all_positions && n == k) continue;             // nothing was rejected
    const auto q = static_cast<int64_t>(src.bases.size());
    src.bases.push_back(tokens_so_far(*rows[i]));
    src.drafts.push_back(prop.host_tokens[i]);
    src.sources.push_back(prop.ids[i]);
    src.greedy.push_back(rows[i]->sub.request.sampling.temperature <= 0);
    for (int64_t j = from; j <= to; ++j) {
      src.rows.push_back(static_cast<int64_t>(i) * K1 + j);
      src.seq.push_back(q);
      src.appended.push_back(j);
    }
  }
  if (src.rows.empty()) return;
  src.logits = std::move(logits);
  src.top_k = st.opt.record_top_k;
  st.records_sent += static_cast<int64_t>(src.rows.size());
  self->send(buffer, records_atom_v, std::move(src));
}

void verify_round(Self* self, size_t g, const Proposals& prop) {
  auto& st = self->state;
  const auto t0 = Clock::now();
  const int64_t B = static_cast<int64_t>(prop.ids.size());
  std::vector<Seq*> rows(B);
  std::vector<SamplingParams> params;
  std::vector<RequestRng*> rngs;
  for (int64_t i = 0; i < B; ++i) {
    rows[i] = &st.seqs.at(prop.ids[i]);
    params.push_back(rows[i]->sub.request.sampling);
    rngs.push_back(&rows[i]->rng);
  }
  const size_t span = st.timeline->begin();
  const size_t graphs_before = st.scorer->graphs_captured();
  auto logits = st.scorer->score(prop);                                        // [B, K + 1, V]
  const bool captured = st.scorer->graphs_captured() != graphs_before;  // timed a graph capture
  if (++st.rounds == st.opt.fail_on_round) throw std::runtime_error("injected verifier failure");
  const int64_t route = st.groups[g].route;
  const bool record = st.speculative && st.routes[route].buffer && prop.tokens.size(1) > 0;
  // A copy of the round's logits for the buffer (a graphed step's output is overwritten by its
  // next replay), queued before the accepted tokens are read, so it is complete once they are;
  // the buffer takes its top-k on its own stream, off this round's path.
  at::Tensor record_logits;  // [B * (K + 1), V]
  if (record) {
    const auto r0 = Clock::now();
    record_logits = logits.reshape({-1, logits.size(2)}).clone();
    st.record_host_ms += ms_since(r0);
  }
  auto verified = verify_round(prop, logits, params, rngs);  // the round's host sync
  for (auto* s : rows)  // their prefill was queued before this sync: its logits are complete
    if (s->prompt_records) {
      st.records_sent += static_cast<int64_t>(s->prompt_records->rows.size());
      self->send(st.routes[s->route].buffer, records_atom_v, std::move(*s->prompt_records));
      s->prompt_records.reset();
    }
  st.timeline->end(
      span, "verify g" + std::to_string(g),
      "{\"batch\":" + std::to_string(B) + ",\"k\":" + std::to_string(prop.tokens.size(1)) + "}");
  const auto& out = verified.out;
  if (record) {
    const auto r0 = Clock::now();
    send_records(self, route, st.routes[route].buffer, prop, std::move(record_logits),
                 logits.size(1), out.accepted, rows);
    st.record_host_ms += ms_since(r0);
  }
  VerdictList verdicts;
  RoundMetrics rm;
  rm.batch = B;
  std::vector<SeqId> done;
  for (int64_t i = 0; i < B; ++i) {
    Seq& s = *rows[i];
    Verdict& v = verified.verdicts[i];
    st.scorer->commit(v);
    s.stats.record(v);
    if (v.k > 0) s.estimator.observe(v.k, v.accepted);
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
    verdicts.push_back(std::move(v));
    if (s.stop.finished() != FinishReason::none || s.cancelled) done.push_back(prop.ids[i]);
  }
  if (st.speculative) self->send(st.routes[route].drafter, commit_atom_v, std::move(verdicts));
  const double round_ms = ms_since(t0);  // the round's own cost, before finishing requests
  for (auto sid : done) {
    auto& s = st.seqs.at(sid);
    finish_seq(self, sid, s.cancelled ? "cancelled" : finish_reason_name(s.stop.finished()));
  }
  rm.score_ms = ms_since(t0);
  rm.draft_version = prop.draft_version;
  st.busy_ms += rm.score_ms;
  if (st.opt.trace) {
    if (prop.draft_steps > 0)
      trace_span(st, "propose g" + std::to_string(g), "drafter", prop.start_us, prop.seconds * 1e6,
                 {{"batch", B}, {"steps", prop.draft_steps}});
    trace_span(st, "verify g" + std::to_string(g), "verifier", steady_us(t0), rm.score_ms * 1e3,
               {{"batch", B}, {"draft_tokens", rm.draft_tokens}, {"accepted", rm.accepted}});
  }
  // What this round cost, for adaptive k: the verification of its longest proposal, the draft's
  // steps, and the hops (below). A round whose verification captured a CUDA graph (the first of
  // each batch, k + 1 and span) took tens of milliseconds more than the step costs: not counted.
  const int64_t K = prop.tokens.defined() && prop.tokens.dim() == 2 ? prop.tokens.size(1) : 0;
  if (!captured) st.costs.observe_verify(B, K, round_ms);
  if (prop.draft_steps > 0 && !captured) {
    st.cost_ratio = 0.9 * st.cost_ratio +
                    0.1 * (prop.seconds * 1e3 / prop.draft_steps) / std::max(rm.score_ms, 1e-6);
    st.costs.observe_draft_step(B, prop.seconds * 1e3 / prop.draft_steps);
    // The hops: the wait for a proposal beyond drafting it, counted where no other group's round
    // was in flight (else the wait is the drafter's queue, which overlaps other verification).
    if (st.groups[g].alone) st.costs.observe_hops(st.groups[g].reply_ms - prop.seconds * 1e3);
  }
  if (st.metrics) self->send(st.metrics, rm);
  st.groups[g].busy = false;
  st.group_failures[g] = 0;
  --st.busy_groups;
}

void verify_and_continue(Self* self, size_t g, const Proposals& prop) {
  self->state.groups[g].reply_ms = ms_since(self->state.groups[g].round_start);
  // The drafter's stream finished the proposal before this stream reads it (a GPU-side wait).
  self->state.stream->make_current();
  self->state.stream->wait(prop.ready.get(), {prop.tokens, prop.probs});
  try {
    verify_round(self, g, prop);
  } catch (const std::exception& e) {
    round_failed(self, g, "internal", e.what());
    rebuild(self, prop.ids);
  }
  if (self->state.busy_groups == 0) self->state.idle_since = Clock::now();
  admit_waiting(self);
  start_rounds(self);
}

void run_group(Self* self, size_t g) {
  auto& st = self->state;
  auto& grp = st.groups[g];
  if (grp.busy || grp.members.empty()) return;
  std::vector<SeqId> ids = grp.members;
  const int64_t B = static_cast<int64_t>(ids.size());
  std::vector<int64_t> ks;
  bool drafts = false;
  // The measured prices of this round's k choices, shared by its rows.
  const auto prices = st.speculative && st.opt.adaptive_k && st.opt.measured_costs
                          ? st.costs.round_table(B)
                          : std::vector<double>();
  for (auto sid : ids) {
    Seq& s = st.seqs.at(sid);
    int64_t k = 0;
    if (st.speculative) {
      if (!st.opt.adaptive_k)
        k = st.opt.k;
      else if (st.opt.measured_costs)
        k = s.estimator.choose(prices);
      else
        k = s.estimator.choose(st.opt.k_max, st.cost_ratio);
      k = std::max<int64_t>(0, std::min({k, s.stop.remaining() - 1, st.scorer->room(sid)}));
    }
    drafts = drafts || k > 0;
    ks.push_back(k);
  }
  grp.busy = true;
  if (st.busy_groups++ == 0) st.idle_ms += ms_since(st.idle_since);
  auto after = [=](const Proposals& prop) { verify_and_continue(self, g, prop); };
  // A round without draft tokens skips the drafter (its verdicts still reach it as commits).
  if (drafts) {
    grp.round_start = Clock::now();
    grp.alone = st.busy_groups == 1;
    const int64_t r = grp.route;
    const int64_t generation = st.routes[r].generation;
    self->request(st.routes[r].drafter, caf::infinite, propose_atom_v, ids, ks)
        .then([=](const Proposals& prop) { after(prop); },
              [=](caf::error& err) {
                auto& s2 = self->state;
                // The drafter failed: respawn it once per failure, then run the round again.
                if (s2.opt.drafter_factory && generation == s2.routes[r].generation) restart_drafter(self, r);
                round_failed(self, g, "drafter_failed", self->system().render(err));
                if (!s2.opt.drafter_factory) {
                  for (auto sid : std::vector<SeqId>(s2.groups[g].members))
                    finish_seq(self, sid, "error", "drafter_failed", self->system().render(err));
                }
                admit_waiting(self);
                start_rounds(self);
              });
  } else {
    // No draft tokens (target-only, or adaptive k chose plain steps): run the round from the
    // mailbox, so admissions and cancels interleave with rounds (and rounds never recurse).
    self->send(self, round_atom_v, static_cast<int64_t>(g), ids, ks);
  }
}

void start_rounds(Self* self) {
  for (size_t g = 0; g < self->state.groups.size(); ++g) run_group(self, g);
}

caf::behavior verifier(Self* self, std::shared_ptr<Transformer> target, std::vector<caf::actor> drafters,
                       caf::actor intake, caf::actor metrics, std::vector<caf::actor> buffers, VerifierOptions opt) {
  auto& st = self->state;
  st.target = target;
  st.stream = std::make_unique<ActorStream>(target->device(), ActorStream::Priority::serving,
                                            opt.beside_multiprocessors, ActorStream::Side::rest);
  if (opt.beside_multiprocessors > 0 && st.stream->on_gpu()) {
    if (st.stream->multiprocessors() > 0)
      log::info(log::cat("verifier and drafters: serve on ", st.stream->multiprocessors(),
                         " multiprocessors, beside the distillers' ", opt.beside_multiprocessors));
    else
      log::warn(log::cat("verifier and drafters: cannot serve beside the distillers (",
                         st.stream->partition_error(), "); they use the whole GPU"));
  }
  st.timeline = std::make_unique<GpuTimeline>(opt.trace ? target->device() : c10::Device(c10::kCPU),
                                              "verifier");
  st.stream->run_on([&] {
    st.scorer = std::make_unique<TargetScorer>(target, opt.num_slots, opt.max_len);
    if (opt.warm_attention_plans && target->device().is_cuda()) st.scorer->warm_attention_plans();
  });
  st.intake = intake;
  st.metrics = metrics;
  st.opt = opt;
  st.costs = RoundCosts(opt.k_max);
  st.speculative = !drafters.empty();
  for (size_t r = 0; r < drafters.size(); ++r) {
    Route route;
    route.name = r < opt.route_names.size() ? opt.route_names[r] : "route-" + std::to_string(r);
    route.drafter = drafters[r];
    if (r < buffers.size()) route.buffer = buffers[r];
    route.version = r < opt.draft_versions.size() ? opt.draft_versions[r] : 0;
    self->monitor(route.drafter);
    self->link_to(route.drafter);  // drafters end with the verifier
    st.drafters.insert(route.drafter.address());
    st.routes.push_back(std::move(route));
  }
  // groups per route (one set of groups without a draft)
  const int64_t per_route = std::max<int64_t>(1, opt.groups);
  for (int64_t r = 0; r < std::max<int64_t>(1, static_cast<int64_t>(st.routes.size())); ++r)
    for (int64_t i = 0; i < per_route; ++i) st.groups.push_back(Group{{}, r, false});
  st.group_failures.assign(st.groups.size(), 0);
  // A drafter's death is handled by the down handler; any other exit ends the verifier.
  self->set_exit_handler([=](caf::exit_msg& m) {
    if (!self->state.drafters.count(m.source)) self->quit(m.reason);
  });
  self->set_down_handler([=](caf::down_msg& dm) {
    auto& s2 = self->state;
    if (!s2.opt.drafter_factory) return;
    for (size_t r = 0; r < s2.routes.size(); ++r)
      if (dm.source == s2.routes[r].drafter.address()) restart_drafter(self, static_cast<int64_t>(r));
  });
  return {
      [=](admit_atom, Submission& sub, caf::actor& sink) {
        if (self->state.early_cancels.erase(sub.id)) {
          answer(self, sink, DoneEvent{sub.id, {}, "", "cancelled", "", "", {}, 0, 0});
          return;
        }
        self->state.waiting.emplace_back(std::move(sub), std::move(sink));
        admit_waiting(self);
        start_rounds(self);
      },
      [=](cancel_atom, const RequestId& id) {
        auto& s = self->state;
        if (id == "*") {  // shutdown without finishing: cancel everything
          for (auto& w : s.waiting) {
            answer(self, w.second, DoneEvent{w.first.id, {}, "", "cancelled", "", "", {}, 0, 0});
          }
          s.waiting.clear();
          for (auto& [sid, seq] : s.seqs) seq.cancelled = true;
          std::vector<SeqId> idle;
          for (auto& [sid, seq] : s.seqs)
            if (!s.groups[seq.group].busy) idle.push_back(sid);
          for (auto sid : idle) finish_seq(self, sid, "cancelled");
          return;
        }
        for (auto it = s.waiting.begin(); it != s.waiting.end(); ++it) {
          if (it->first.id == id) {
            answer(self, it->second, DoneEvent{id, {}, "", "cancelled", "", "", {}, 0, 0});
            s.waiting.erase(it);
            return;
          }
        }
        auto f = s.by_id.find(id);
        if (f == s.by_id.end()) {
          if (s.early_cancels.size() > 10000) s.early_cancels.clear();
          s.early_cancels.insert(id);
          return;
        }
        Seq& seq = s.seqs.at(f->second);
        seq.cancelled = true;
        if (!s.groups[seq.group].busy) finish_seq(self, f->second, "cancelled");
      },
      [=](round_atom, int64_t g, std::vector<SeqId>& ids, std::vector<int64_t>& ks) {
        // No draft tokens. Sequences cancelled or finished since the round was scheduled are
        // dropped from it.
        self->state.stream->make_current();
        std::vector<SeqId> live_ids;
        std::vector<int64_t> live_ks;
        for (size_t i = 0; i < ids.size(); ++i)
          if (self->state.seqs.count(ids[i])) live_ids.push_back(ids[i]), live_ks.push_back(ks[i]);
        auto prop =
            Proposals::none(std::move(live_ids), std::move(live_ks),
                            self->state.target->config().vocab_size, self->state.target->device());
        if (self->state.speculative)
          prop.draft_version = self->state.routes[self->state.groups[g].route].version;
        if (prop.ids.empty()) {
          auto& st = self->state;
          st.groups[g].busy = false;
          if (--st.busy_groups == 0) st.idle_since = Clock::now();
          admit_waiting(self);
          start_rounds(self);
          return;
        }
        verify_and_continue(self, static_cast<size_t>(g), prop);
      },
      [=](swap_atom, WeightsSnapshot& snap) {
        auto& s = self->state;
        if (snap.route < 0 || snap.route >= static_cast<int64_t>(s.routes.size())) return;
        auto& route = s.routes[snap.route];
        if (!snap.model || snap.version <= route.version) return;
        route.version = snap.version;
        route.latest = snap.model;
        self->send(route.drafter, swap_atom_v, std::move(snap));
      },
      [=](route_atom, caf::actor router) { self->state.router = std::move(router); },
      [=](trace_atom) -> std::string {
        auto events = self->state.trace;
        for (auto& e : nlohmann::json::parse(self->state.timeline->chrome_events()))
          events.push_back(std::move(e));
        return nlohmann::json{{"traceEvents", events}}.dump();
      },
      [=](stats_atom) -> std::string {
        auto& s = self->state;
        double idle = s.idle_ms + (s.busy_groups == 0 ? ms_since(s.idle_since) : 0.0);
        double total = ms_since(s.started);
        nlohmann::json j = {{"in_flight", s.seqs.size()},
                            {"waiting", s.waiting.size()},
                            {"verifier_busy_ms", s.busy_ms},
                            {"verifier_no_round_ms", idle},
                            {"verifier_idle_fraction", total > 0 ? 1.0 - s.busy_ms / total : 0.0},
                            {"cost_ratio", s.cost_ratio},
                            {"record_host_ms", s.record_host_ms},
                            {"target_graphs", s.scorer->graphs_captured()},
                            {"target_graph_capture_ms", s.scorer->graph_capture_ms()},
                            {"records_sent", s.records_sent},
                            {"drafter_restarts", s.drafter_restarts},
                            {"round_recoveries", s.round_recoveries},
                            {"draft_version", s.routes.empty() ? 0 : s.routes[0].version}};
        nlohmann::json routes = nlohmann::json::array();
        for (const auto& r : s.routes) {
          int64_t live = 0;
          for (const auto& [sid, seq] : s.seqs) live += &s.routes[seq.route] == &r;
          routes.push_back({{"name", r.name},
                            {"draft_version", r.version},
                            {"in_flight", live},
                            {"drafter_generation", r.generation}});
        }
        j["routes"] = routes;
        // What adaptive k prices a round at, by batch size (ms, measured or interpolated).
        nlohmann::json costs = nlohmann::json::object();
        for (int64_t b : {1, 2, 4, 8, 16}) {
          costs["batch " + std::to_string(b) + (b == 16 ? "+" : "")] = {
              {"verify_ms_by_k", s.costs.verify_table(b)},
              {"round_ms_by_k", s.costs.round_table(b)},
              {"cost_ratio", s.costs.cost_ratio(b)}};
        }
        j["round_costs"] = costs;
        return j.dump();
      },
  };
}

}  // namespace

caf::actor spawn_verifier(caf::actor_system& sys, std::shared_ptr<Transformer> target,
                          std::vector<caf::actor> drafters, caf::actor intake, caf::actor metrics,
                          std::vector<caf::actor> buffers, VerifierOptions opt) {
  return sys.spawn<caf::detached>(verifier, std::move(target), std::move(drafters), std::move(intake),
                                  std::move(metrics), std::move(buffers), std::move(opt));
}

}  // namespace osd
