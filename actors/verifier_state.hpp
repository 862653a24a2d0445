#pragma once
// The verifier actor's state and the steps its handlers take (actors/verifier.cpp holds the
// handlers). Everything here runs on the verifier's own thread; nothing is shared.
#include <caf/all.hpp>

#include <chrono>
#include <deque>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "actors/messages.hpp"
#include "actors/verifier.hpp"
#include "models/core/device_stream.hpp"
#include "models/speculation/round_scheduler.hpp"
#include "models/speculation/scorer.hpp"
#include "models/speculation/stop_conditions.hpp"

namespace osd {

using VerifierClock = std::chrono::steady_clock;

// One request the verifier serves.
struct VerifierSeq {
  Submission sub;
  caf::actor sink;
  StopChecker stop;
  SpecStats stats;
  int64_t route = 0;
  bool cancelled = false;
  bool in_round = false;      // in a round that waits for its proposal
  bool drafter_knows = false; // the route's drafter holds (some of) it: remove it at the end
  int64_t draft_known = 0;    // tokens of it the route's drafter holds correctly
  int64_t failures = 0;       // rounds that failed on it in a row (it then runs alone)
  int64_t plain_since_record = 0;  // tokens emitted at k = 0 since its last plain record
  VerifierClock::time_point start = VerifierClock::now();
  double ttft_ms = -1;
  // The prompt's records (VerifierOptions::record_prompt_positions): the prefill's logits, kept
  // and sent after the first round's host sync, which completes them.
  std::optional<RecordSource> prompt_records;
  std::vector<int64_t> tokens_so_far() const;  // prompt + generated
};

// One draft route: its drafter, its share of the distillation buffer, its newest weights.
struct VerifierRoute {
  std::string name;
  caf::actor drafter, buffer;
  std::shared_ptr<const Transformer> latest;  // the newest snapshot (for restarts)
  int64_t version = 0;
  int64_t generation = 0;      // bumped at every restart of this route's drafter
  int64_t in_flight = 0;       // rounds waiting for their proposal
  bool round_queued = false;   // a round_atom for this route is in the mailbox
};

// A round that waits for its proposal.
struct DraftingRound {
  int64_t route = 0;
  std::vector<SeqId> ids;
  std::vector<int64_t> ks;
  VerifierClock::time_point asked;
  bool alone = false;  // no other round was in flight when it asked (its wait measures the hops)
  int64_t generation = 0;
};

struct VerifierState {
  std::unique_ptr<ActorStream> stream;  // first: destroyed after the tensors made on it
  std::unique_ptr<TargetScorer> scorer;
  std::unique_ptr<GpuTimeline> timeline;  // GPU spans of its rounds (opt.trace)
  std::unique_ptr<RoundScheduler> scheduler;
  std::shared_ptr<Transformer> target;
  caf::actor intake, metrics, router;
  std::vector<VerifierRoute> routes;  // one even without a draft (target-only)
  bool speculative = false;           // routes have drafters
  VerifierOptions opt;
  std::map<SeqId, VerifierSeq> seqs;
  std::map<RequestId, SeqId> by_id;
  std::deque<std::pair<Submission, caf::actor>> waiting;  // no slot yet
  std::deque<SeqId> prefilling;                           // admitted, prompt not fully run
  bool tick_queued = false;                               // a tick continues prefilling
  std::set<RequestId> early_cancels;  // cancels that overtook their submission (bounded)
  std::map<int64_t, DraftingRound> drafting;  // by round id
  int64_t next_round = 1;
  SeqId next_sid = 1;
  int64_t rounds = 0;
  int64_t drafter_restarts = 0, round_recoveries = 0, drafter_messages = 0;
  std::set<caf::actor_addr> drafters;  // every drafter this verifier used (linked)
  nlohmann::json trace = nlohmann::json::array();  // Chrome trace events (opt.trace)
  double record_host_ms = 0;  // host time spent copying logits and describing records
  int64_t records_sent = 0;
  VerifierClock::time_point idle_since = VerifierClock::now(), started = VerifierClock::now();
  double busy_ms = 0;
  static inline const char* name = "osd.verifier";
};

using VerifierActor = caf::stateful_actor<VerifierState>;

// The steps (actors/verifier_state.cpp and actors/verifier_rounds.cpp).
void pump(VerifierActor* self);  // admit, prefill a chunk, queue the routes' rounds
void run_round(VerifierActor* self, int64_t route);  // a route's next round (round_atom)
void cancel_request(VerifierActor* self, const RequestId& id);
void finish_seq(VerifierActor* self, SeqId sid, FinishReason reason, const std::string& code = "",
                const std::string& message = "");
void answer(VerifierActor* self, const caf::actor& sink, DoneEvent done);
void restart_drafter(VerifierActor* self, int64_t route);
void trace_span(VerifierState& st, const std::string& name, const std::string& track, double ts_us,
                double dur_us, nlohmann::json args);
double steady_us(VerifierClock::time_point t);
double ms_since(VerifierClock::time_point t);
std::string verifier_stats(VerifierActor* self);

}  // namespace osd
