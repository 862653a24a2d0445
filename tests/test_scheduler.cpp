// The round scheduler's parts: acceptance per position, the cost model, the goodput planner (its
// decisions with injected costs), the drafter's catch-up (DraftSync), chunked prefill, and the
// ragged round's accept rules (p/q and coupled), checked statistically with controls.
#include "tests/test_common.hpp"

#include <cmath>
#include <map>

#include "models/speculation/acceptance_model.hpp"
#include "models/speculation/cost_model.hpp"
#include "models/speculation/goodput_planner.hpp"
#include "models/speculation/proposer.hpp"
#include "models/speculation/rejection_sampler.hpp"
#include "models/speculation/round_scheduler.hpp"
#include "models/speculation/scorer.hpp"
#include "tests/spec_fixtures.hpp"

using namespace osd;
using namespace osd::test;

namespace {

// A cost model that has measured exactly these prices: verification of K + 1 tokens at every
// batch bucket from verify(b, K), draft steps from draft(b), hops.
RoundCostModel priced(const std::function<double(int64_t, int64_t)>& verify,
                      const std::function<double(int64_t)>& draft, double hops, int64_t k_max = 8) {
  RoundCostModel c(k_max);
  for (int64_t b = 1; b <= 256; b *= 2) {
    for (int64_t K = 0; K <= k_max; ++K) c.observe_verify(b, K, verify(b, K));
    c.observe_draft_step(b, draft(b));
  }
  c.observe_hops(hops);
  return c;
}

// A row whose draft is accepted with probability alpha at every position.
PlanRow row(double alpha, int64_t cap = 8) {
  AcceptanceModel m(8, 0.9, alpha, 1e9);  // a prior worth 1e9 rounds: alpha exactly
  return {m.expected_tokens(), cap};
}

}  // namespace

TEST_CASE("acceptance model: E(k) is the geometric formula at one rate, per position after rounds",
          "[scheduler]") {
  AcceptanceModel flat(6, 0.9, 0.7, 1e9);
  const auto e = flat.expected_tokens();
  for (int64_t k = 0; k <= 6; ++k) CHECK(e[k] == Approx(expected_tokens_per_round(0.7, k)));
  // Rounds that always accept the first token and reject the second: rate(1) -> 1, rate(2) -> 0.
  AcceptanceModel m(4, 1.0, 0.5, 2.0);
  for (int i = 0; i < 200; ++i) m.observe(4, 1);
  CHECK(m.rate(1) > 0.98);
  CHECK(m.rate(2) < 0.02);
  CHECK(m.rate(3) == Approx(0.5));  // never reached: the prior
  CHECK(m.expected_tokens()[4] == Approx(2.0).epsilon(0.03));
  // A sequence with no rounds of its own follows its route's model.
  AcceptanceModel fresh(4, 0.9, 0.1, 2.0);
  CHECK(fresh.rate(1, &m) == Approx(m.rate(1)));
  fresh.reset(0.3);
  CHECK(fresh.alpha() == Approx(0.3));
}

TEST_CASE("cost model: measured shapes stand, others interpolate or borrow the nearest bucket",
          "[scheduler]") {
  RoundCostModel c(4);
  CHECK(c.verify_ms(8, 2) == Approx(1.0));  // nothing measured: 1 ms flat
  c.observe_verify(8, 0, 2.0);
  c.observe_verify(8, 4, 6.0);
  CHECK(c.verify_ms(8, 2) == Approx(4.0));  // between the two measured
  CHECK(c.verify_ms(8, 0) == Approx(2.0));
  // Batch 64 measured only its plain step: the shape of batch 8's line, scaled to it.
  c.observe_verify(64, 0, 10.0);
  CHECK(c.verify_ms(64, 4) == Approx(30.0));
  // Never cheaper with more tokens, whatever the noise.
  c.observe_verify(2, 0, 3.0);
  c.observe_verify(2, 1, 2.0);
  CHECK(c.verify_ms(2, 1) >= c.verify_ms(2, 0));
  CHECK(c.round_ms(8, 0, 5) == Approx(2.0));  // a plain step: no drafting, no hops
  c.observe_draft_step(8, 0.5);
  c.observe_hops(0.2);
  CHECK(c.round_ms(8, 4, 8) == Approx(6.0 + 4 * 0.5 + 0.2));
}

TEST_CASE("goodput planner: k = 0 when acceptance is low or verification is compute-bound",
          "[scheduler]") {
  // Memory-bound target (verification flat in tokens), cheap draft: a good draft at batch 1 gets
  // a long proposal; a hopeless one gets none.
  auto flat = priced([](int64_t, int64_t K) { return 1.0 + 0.02 * K; }, [](int64_t) { return 0.05; }, 0.05);
  auto good = plan_round({row(0.9)}, flat);
  CHECK(good.K >= 5);
  CHECK(good.k[0] == good.K);
  CHECK(good.goodput() > good.plain_tokens_per_ms * 2);
  CHECK(plan_round({row(0.02)}, flat).K == 0);
  // Compute-bound target: verifying K + 1 tokens costs K + 1 steps, so even a good draft loses.
  auto compute = priced([](int64_t b, int64_t K) { return 0.1 * b * (K + 1); }, [](int64_t) { return 0.01; }, 0.0);
  CHECK(plan_round({row(0.8)}, compute).K == 0);
  std::vector<PlanRow> batch(16, row(0.8));
  CHECK(plan_round(batch, compute).K == 0);
  // Control: the same rows on the memory-bound target do draft.
  CHECK(plan_round(batch, flat).K > 0);
}

TEST_CASE("goodput planner: in a mixed batch only the rows that pay draft, and caps hold",
          "[scheduler]") {
  // Each drafting row costs the drafter; a row with a poor draft is left at k = 0.
  auto costs = priced([](int64_t, int64_t K) { return 1.0 + 0.05 * K; },
                      [](int64_t rows) { return 0.02 * rows; }, 0.05);
  std::vector<PlanRow> rows = {row(0.9), row(0.05), row(0.85), row(0.0), row(0.9, 2), row(0.9, 0)};
  auto p = plan_round(rows, costs);
  REQUIRE(p.K > 0);
  CHECK(p.k[0] > 0);
  CHECK(p.k[2] > 0);
  CHECK(p.k[1] == 0);
  CHECK(p.k[3] == 0);
  CHECK(p.k[4] == 2);  // capped (max_new_tokens or the context)
  CHECK(p.k[5] == 0);  // no room to draft at all
  CHECK(p.drafting() == 3);
  // The expected tokens of the plan are the sum of its rows' E(k).
  double tokens = 0;
  for (size_t i = 0; i < rows.size(); ++i) tokens += rows[i].expected_tokens[p.k[i]];
  CHECK(p.tokens == Approx(tokens));
  // A row far behind (its drafter must first run 5,000 tokens) is not worth its catch-up now.
  costs.observe_catch_up(100, 1.0);  // 0.01 ms a token
  auto behind = rows;
  behind[0].lag = 5000;
  auto q = plan_round(behind, costs);
  CHECK(q.k[0] == 0);
  CHECK(q.k[2] > 0);
  // A speculative plan must beat the plain step by the margin: at break-even it stays plain.
  auto even = priced([](int64_t, int64_t K) { return 1.0 + K; }, [](int64_t) { return 0.0; }, 0.0);
  CHECK(plan_round({row(0.999)}, even, 0.02).K == 0);
}

TEST_CASE("round scheduler: a new draft version resets the route to its held-out acceptance, "
          "probes, fixed k, cohorts split only when it pays",
          "[scheduler]") {
  SchedulerOptions o;
  o.k_max = 4;
  o.probe_every = 4;
  RoundScheduler s(o, 2);
  s.add(1, 0);
  s.add(2, 1);
  for (int i = 0; i < 50; ++i) s.observe(1, 4, 0);  // route 0's draft is hopeless
  CHECK(s.route_alpha(0) < 0.2);
  auto p = s.plan(0, {1}, {4}, {0});
  CHECK(p.K == 0);
  int probes = 0;
  for (int i = 0; i < 8; ++i) probes += s.plan(0, {1}, {4}, {0}).K > 0;
  CHECK(probes == 2);  // every 4th round at k = 0 tries k = 1
  s.new_version(0, 0.95);  // the distiller measured a much better draft
  CHECK(s.route_alpha(0) == Approx(0.95).epsilon(0.01));
  CHECK(s.plan(0, {1}, {4}, {0}).K > 0);
  CHECK(s.route_alpha(1) == Approx(0.6).epsilon(0.01));  // the other route is untouched
  // Fixed k: every row drafts k, capped.
  SchedulerOptions f = o;
  f.adaptive = false;
  f.fixed_k = 3;
  RoundScheduler fixed(f, 1);
  fixed.add(5, 0), fixed.add(6, 0);
  CHECK(fixed.plan(0, {5, 6}, {4, 1}, {0, 0}).k == std::vector<int64_t>{3, 1});
  // Cohorts: where verification grows with the batch and drafting costs as much, two cohorts
  // that overlap one's drafting with the other's verification pay; with a free drafter they do
  // not (two half passes cost what one whole pass does).
  std::vector<SeqId> ids;
  std::vector<int64_t> caps;
  SchedulerOptions c = o;
  c.prior_alpha = 0.9;
  RoundScheduler costly(c, 1), cheap(c, 1);
  for (SeqId i = 10; i < 18; ++i) costly.add(i, 0), cheap.add(i, 0), ids.push_back(i), caps.push_back(4);
  for (int64_t b = 1; b <= 16; b *= 2)
    for (int64_t K = 0; K <= 4; ++K) {
      costly.observe_verify(b, K, 0.25 * b), cheap.observe_verify(b, K, 0.25 * b);
      costly.observe_draft_step(b, 0.5), cheap.observe_draft_step(b, 0.001);
    }
  const std::vector<int64_t> lags(8, 0);
  CHECK(costly.cohort_size(0, ids, caps, lags, 0) == 4);
  CHECK(cheap.cohort_size(0, ids, caps, lags, 0) == 8);
  CHECK(costly.cohort_size(0, ids, caps, lags, 1) == 8);  // the other cohort is already in flight
  SchedulerOptions same_cores = c;
  same_cores.overlap = false;  // draft and target on the same CPU cores: turns, not overlap
  RoundScheduler cpu(same_cores, 1);
  for (auto i : ids) cpu.add(i, 0);
  CHECK(cpu.cohort_size(0, ids, caps, lags, 0) == 8);
}

TEST_CASE("proposer: a sequence synced after rounds at k = 0 catches up in one prefill and "
          "proposes what a fresh draft proposes",
          "[scheduler][spec]") {
  auto draft = peaked_model(tiny_config(64, 32, 2), 3);
  SamplingParams sp;
  sp.seed = 9;  // sampled draws: q must match too
  std::vector<int64_t> seq = {5, 9, 3, 7, 1, 2};
  DraftProposer lazy(draft, 4, 96), fresh(draft, 4, 96);
  lazy.sync({1, 0, seq, sp});  // nothing runs yet
  CHECK(lazy.known(1) == 6);
  auto a = lazy.propose({1}, {3});
  CHECK(lazy.catch_up_tokens() == 5);  // all but the last token, in one prefill
  // The verifier accepted 1 draft and then emitted 4 tokens at k = 0 (never sent): one sync.
  seq.push_back(a.host_tokens[0][0]);
  std::vector<int64_t> later = {11, 12, 13, 14};
  seq.insert(seq.end(), later.begin(), later.end());
  lazy.sync({1, 7, later, sp});
  fresh.add(2, seq, sp);
  auto x = lazy.propose({1, 3}, {3, 0}), y = fresh.propose({2}, {3});  // row 3: unknown, k = 0
  CHECK(x.host_tokens[0] != std::vector<int64_t>{});
  CHECK(max_abs_diff(x.probs[0], y.probs[0]) < 1e-5);
  CHECK(x.host_tokens[0] == y.host_tokens[0]);  // same seed, same positions: the same draws
  CHECK(x.host_tokens[1].empty());
  // Errors: a sync that claims more than the drafter holds; a new sequence said to be known.
  CHECK_THROWS_WITH(lazy.sync({1, 1000, {}, sp}), Catch::Contains("holds"));
  CHECK_THROWS_WITH(lazy.sync({8, 3, {1, 2}, sp}), Catch::Contains("is new here"));
}

TEST_CASE("scorer: a prompt prefilled in chunks scores as one prefilled at once", "[scheduler][spec]") {
  auto target = peaked_model(tiny_config(64, 32, 2), 4);
  TargetScorer whole(target, 2, 96), chunked(target, 2, 96);
  std::vector<int64_t> prompt;
  for (int i = 0; i < 40; ++i) prompt.push_back((i * 7 + 3) % 64);
  at::Tensor logits_whole, logits_chunked;
  whole.add(1, prompt, &logits_whole, 3);
  chunked.begin(1, prompt);
  CHECK(chunked.unprefilled(1) == 39);
  CHECK_THROWS_WITH(chunked.score(Proposals::none({1}, {0}, 64, target->device())),
                    Catch::Contains("still being prefilled"));
  CHECK(chunked.prefill(1, 16) == 23);
  CHECK(chunked.prefill(1, 16) == 7);
  CHECK(chunked.prefill(1, 16, &logits_chunked, 3) == 0);
  CHECK(max_abs_diff(logits_whole, logits_chunked) < 1e-4);
  CHECK(whole.length(1) == chunked.length(1));
  auto p = Proposals::none({1}, {0}, 64, target->device());
  CHECK(max_abs_diff(whole.score(p), chunked.score(p)) < 1e-4);
}

TEST_CASE("ragged rounds: the p/q rule and the coupled draw both emit the target's distribution "
          "and a wrong rule does not, and the coupled draw equals target-only sampling",
          "[scheduler][stats]") {
  // One round of rows with k = 0..4 over fixed p and q: the first emitted token of every row is
  // distributed as p[0] whatever its k. Seeds vary per row and trial (position-keyed uniforms).
  const int64_t V = 6, K = 4;
  auto p1 = torch::tensor({0.35, 0.25, 0.15, 0.1, 0.1, 0.05}, torch::kFloat32);
  auto q1 = torch::tensor({0.05, 0.1, 0.4, 0.25, 0.1, 0.1}, torch::kFloat32);
  auto logits_row = p1.log().unsqueeze(0).expand({K + 1, V});  // the target's logits at every position
  const std::vector<int64_t> ks = {0, 1, 2, 3, 4};
  const int64_t B = static_cast<int64_t>(ks.size());
  auto chi2_of = [&](SamplingMode mode, AcceptRule rule, int64_t trials, int64_t* coupled_mismatch) {
    std::vector<std::vector<int64_t>> counts(B, std::vector<int64_t>(V, 0));
    std::mt19937_64 rng(17);
    std::discrete_distribution<int64_t> from_q({0.05, 0.1, 0.4, 0.25, 0.1, 0.1});
    for (int64_t t = 0; t < trials; ++t) {
      Proposals prop;
      prop.k = ks;
      prop.tokens = torch::zeros({B, K}, torch::kInt64);
      prop.probs = q1.view({1, 1, V}).expand({B, K, V}).contiguous();
      prop.host_tokens.assign(B, {});
      std::vector<SamplingParams> params(B);
      std::vector<int64_t> positions(B, 5);
      for (int64_t i = 0; i < B; ++i) {
        prop.ids.push_back(i);
        params[i].seed = static_cast<uint64_t>(t * B + i);
        params[i].mode = mode;
        for (int64_t j = 0; j < ks[i]; ++j) {
          // The draft's token: drawn from q (rejection) or by q's inverse CDF with the target's
          // own uniform at that position (coupled), as the proposer draws it.
          int64_t d;
          if (mode == SamplingMode::coupled) {
            const double u = position_uniform(params[i].seed, positions[i] + j, DrawPurpose::target);
            d = sample_from_probs(q1.unsqueeze(0), torch::tensor({u}, torch::kFloat64))[0].item<int64_t>();
          } else {
            d = from_q(rng);
          }
          prop.tokens[i][j] = d;
          prop.host_tokens[i].push_back(d);
        }
      }
      auto logits = logits_row.unsqueeze(0).expand({B, K + 1, V}).contiguous();
      auto r = verify_round(prop, logits, params, positions, rule);
      for (int64_t i = 0; i < B; ++i) {
        const int64_t first = r.verdicts[i].emitted.front();
        ++counts[i][first];
        if (coupled_mismatch) {  // target-only sampling of this seed at this position
          const double u = position_uniform(params[i].seed, positions[i], DrawPurpose::target);
          const auto alone = sample_from_probs(p1.unsqueeze(0), torch::tensor({u}, torch::kFloat64))[0].item<int64_t>();
          *coupled_mismatch += alone != first;
        }
      }
    }
    double worst = 0;  // the largest chi-square over rows (V - 1 = 5 degrees of freedom)
    for (int64_t i = 0; i < B; ++i) {
      double chi2 = 0;
      for (int64_t x = 0; x < V; ++x) {
        const double expect = p1[x].item<double>() * trials;
        chi2 += std::pow(counts[i][x] - expect, 2) / expect;
      }
      worst = std::max(worst, chi2);
    }
    return worst;
  };
  // 5 rows of 5 degrees of freedom: P(chi2 > 25) ~ 1e-4 each.
  CHECK(chi2_of(SamplingMode::rejection, AcceptRule::exact, 20000, nullptr) < 25);
  int64_t mismatched = 0;
  CHECK(chi2_of(SamplingMode::coupled, AcceptRule::exact, 20000, &mismatched) < 25);
  CHECK(mismatched == 0);
  // Control: a wrong rule is caught by the same statistic.
  CHECK(chi2_of(SamplingMode::rejection, AcceptRule::broken_resample_from_p, 20000, nullptr) > 100);
}
