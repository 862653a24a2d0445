#include "models/speculation/round_scheduler.hpp"

#include <algorithm>

namespace osd {

RoundScheduler::RoundScheduler(SchedulerOptions options, int64_t routes)
    : opt_(options),
      costs_(options.k_max),
      routes_(std::max<int64_t>(routes, 1), AcceptanceModel(options.k_max, 0.99, options.prior_alpha)),
      rounds_at_zero_(std::max<int64_t>(routes, 1), 0) {
  stats_.k_rows.assign(opt_.k_max + 1, 0);
}

void RoundScheduler::add(SeqId id, int64_t route) {
  seqs_.insert_or_assign(id, Seq{route, AcceptanceModel(opt_.k_max, 0.9, opt_.prior_alpha)});
}

void RoundScheduler::remove(SeqId id) { seqs_.erase(id); }

std::vector<PlanRow> RoundScheduler::plan_rows(const std::vector<SeqId>& ids,
                                               const std::vector<int64_t>& caps,
                                               const std::vector<int64_t>& lags) const {
  std::vector<PlanRow> rows;
  rows.reserve(ids.size());
  for (size_t i = 0; i < ids.size(); ++i) {
    const auto& s = seqs_.at(ids[i]);
    rows.push_back({s.acceptance.expected_tokens(&routes_.at(s.route)),
                    std::clamp<int64_t>(caps[i], 0, opt_.k_max), i < lags.size() ? lags[i] : 0});
  }
  return rows;
}

size_t RoundScheduler::cohort_size(int64_t route, const std::vector<SeqId>& ready,
                                   const std::vector<int64_t>& caps, const std::vector<int64_t>& lags,
                                   int64_t in_flight) {
  const size_t B = ready.size();
  if (!opt_.adaptive || opt_.k_override || !opt_.overlap || in_flight > 0 || opt_.max_cohorts < 2 || B < 2)
    return B;
  const auto whole = plan_round(plan_rows(ready, caps, lags), costs_, opt_.margin);
  if (whole.K == 0) return B;
  // Two cohorts of half the rows: while one drafts the other verifies, so a cycle of both costs
  // the longer of two verifications and one verification plus its drafting and hops. Where a
  // verification costs the same at half the batch (memory-bound), this never beats one cohort.
  const size_t h = (B + 1) / 2;
  std::vector<SeqId> half(ready.begin(), ready.begin() + h);
  std::vector<int64_t> half_caps(caps.begin(), caps.begin() + h), half_lags(lags.begin(), lags.begin() + h);
  const auto part = plan_round(plan_rows(half, half_caps, half_lags), costs_, opt_.margin);
  if (part.K == 0) return B;
  const double verify = costs_.verify_ms(h, part.K);
  const double cycle = std::max(2 * verify, part.ms);
  if (2 * part.tokens / cycle <= whole.goodput() * (1.0 + opt_.margin)) return B;
  ++stats_.splits;
  return h;
}

RoundPlan RoundScheduler::plan(int64_t route, const std::vector<SeqId>& ids,
                               const std::vector<int64_t>& caps, const std::vector<int64_t>& lags) {
  RoundPlan p;
  if (opt_.k_override) {
    p.k.resize(ids.size());
    for (size_t i = 0; i < ids.size(); ++i)
      p.k[i] = std::clamp<int64_t>(opt_.k_override(ids[i], stats_.rounds, caps[i]), 0,
                                   std::min<int64_t>(caps[i], opt_.k_max));
    p.K = ids.empty() ? 0 : *std::max_element(p.k.begin(), p.k.end());
  } else if (opt_.adaptive) {
    p = plan_round(plan_rows(ids, caps, lags), costs_, opt_.margin);
  } else {
    p.k.resize(ids.size());
    for (size_t i = 0; i < ids.size(); ++i) p.k[i] = std::clamp<int64_t>(caps[i], 0, opt_.fixed_k);
    p.K = ids.empty() ? 0 : *std::max_element(p.k.begin(), p.k.end());
  }
  auto& zero = rounds_at_zero_.at(route);
  if (p.K > 0) {
    zero = 0;
  } else if (opt_.adaptive && !opt_.k_override && opt_.probe_every > 0 &&
             ++zero >= opt_.probe_every) {
    // Probe: the row with the most to gain drafts one token, so the route's acceptance is measured
    // again (a draft that improved, or traffic it now fits).
    zero = 0;
    const auto rows = plan_rows(ids, caps, lags);
    int64_t best = -1;
    for (size_t i = 0; i < rows.size(); ++i)
      if (rows[i].cap > 0 && (best < 0 || rows[i].expected_tokens[1] > rows[best].expected_tokens[1]))
        best = static_cast<int64_t>(i);
    if (best >= 0) p.k[best] = 1, p.K = 1, ++stats_.probes;
  }
  ++stats_.rounds;
  if (p.K == 0) ++stats_.rounds_all_k0;
  for (auto k : p.k) ++stats_.k_rows[std::clamp<int64_t>(k, 0, opt_.k_max)];
  return p;
}

void RoundScheduler::observe(SeqId id, int64_t k, int64_t accepted) {
  auto it = seqs_.find(id);
  if (it == seqs_.end() || k <= 0) return;
  it->second.acceptance.observe(k, accepted);
  routes_.at(it->second.route).observe(k, accepted);
}

void RoundScheduler::new_version(int64_t route, double heldout_acceptance) {
  auto& r = routes_.at(route);
  r.reset(heldout_acceptance >= 0 ? heldout_acceptance : r.alpha());
  rounds_at_zero_.at(route) = 0;
  for (auto& [id, s] : seqs_)
    if (s.route == route) s.acceptance.reset(opt_.prior_alpha);
}

}  // namespace osd
