#pragma once
// The round scheduler: which sequences of a draft route go into the next round, and how many
// draft tokens each gets. It holds what the decisions rest on:
//   - the measured costs of rounds (cost_model.hpp), shared by every route;
//   - each route's acceptance (acceptance_model.hpp) for its current draft version: the prior of
//     its sequences, reset to the distiller's held-out acceptance when a new version arrives;
//   - each sequence's own acceptance on top of its route's.
// A round takes the route's ready sequences (or half of them, when two cohorts that overlap one's
// drafting with the other's verification are expected to emit more per millisecond) and gives
// them the goodput planner's k (goodput_planner.hpp); a route whose plans stay at k = 0 probes
// one sequence at k = 1 every probe_every rounds, so a draft that got better is noticed. No torch,
// no actors: the verifier actor asks it and carries the plans out.
#include <cstdint>
#include <functional>
#include <map>
#include <vector>

#include "models/speculation/acceptance_model.hpp"
#include "models/speculation/cost_model.hpp"
#include "models/speculation/goodput_planner.hpp"
#include "models/speculation/spec_types.hpp"

namespace osd {

struct SchedulerOptions {
  int64_t k_max = 8;        // the longest proposal the planner considers
  bool adaptive = true;     // the goodput planner; false: every sequence drafts fixed_k
  int64_t fixed_k = 4;
  double margin = 0.02;     // a speculative plan must beat the plain step by this share
  int64_t max_cohorts = 2;  // rounds of one route in flight at once (2 overlaps drafting)
  // Whether drafting can run beside verification at all (false where the draft and the target
  // share the CPU's cores: then two cohorts only take turns, and never pay).
  bool overlap = true;
  int64_t probe_every = 64; // rounds of a route at k = 0 between probes (0: never)
  double prior_alpha = 0.6; // acceptance before anything is measured
  // Tests and experiments: k of each row instead of the planner's, from (sequence, the
  // scheduler's round count, cap); the result is clamped to [0, cap]. Empty: the planner.
  std::function<int64_t(SeqId, int64_t round, int64_t cap)> k_override;
};

// Counters of the decisions, for stats.
struct SchedulerStats {
  std::vector<int64_t> k_rows;  // [k]: rows scheduled with k draft tokens
  int64_t rounds = 0, rounds_all_k0 = 0, probes = 0, splits = 0;
};

class RoundScheduler {
 public:
  RoundScheduler(SchedulerOptions options, int64_t routes);
  void add(SeqId id, int64_t route);
  void remove(SeqId id);
  // The rows of the next round out of a route's ready rows (their caps: the most draft tokens each
  // may take now): all of them, or the first half when splitting into two cohorts pays;
  // `in_flight`: rounds of the route already in flight.
  // lags: per row, the tokens its drafter must catch up on before it drafts.
  size_t cohort_size(int64_t route, const std::vector<SeqId>& ready, const std::vector<int64_t>& caps,
                     const std::vector<int64_t>& lags, int64_t in_flight);
  // k per row for a round of these rows of one route (counted in the stats).
  RoundPlan plan(int64_t route, const std::vector<SeqId>& ids, const std::vector<int64_t>& caps,
                 const std::vector<int64_t>& lags);
  // After verification: a row that drafted k tokens and kept `accepted`.
  void observe(SeqId id, int64_t k, int64_t accepted);
  // A round's measured times (a round that captured a CUDA graph should not be reported).
  void observe_verify(int64_t batch, int64_t K, double ms) { costs_.observe_verify(batch, K, ms); }
  void observe_draft_step(int64_t rows, double ms) { costs_.observe_draft_step(rows, ms); }
  void observe_hops(double ms) { costs_.observe_hops(ms); }
  void observe_catch_up(int64_t tokens, double ms) { costs_.observe_catch_up(tokens, ms); }
  // A new draft version of a route: its sequences start again from the route's prior, which is
  // the held-out acceptance its distiller measured (< 0: keep the route's estimate).
  void new_version(int64_t route, double heldout_acceptance);
  double route_alpha(int64_t route) const { return routes_.at(route).alpha(); }
  const RoundCostModel& costs() const { return costs_; }
  const SchedulerStats& stats() const { return stats_; }
  const SchedulerOptions& options() const { return opt_; }

 private:
  struct Seq {
    int64_t route = 0;
    AcceptanceModel acceptance;
  };
  std::vector<PlanRow> plan_rows(const std::vector<SeqId>& ids, const std::vector<int64_t>& caps,
                                 const std::vector<int64_t>& lags) const;
  SchedulerOptions opt_;
  RoundCostModel costs_;
  std::vector<AcceptanceModel> routes_;
  std::vector<int64_t> rounds_at_zero_;  // per route, since its last round that drafted
  std::map<SeqId, Seq> seqs_;
  SchedulerStats stats_;
};

}  // namespace osd
