// The sequential guard: its false-publish rate (simulated, with a fixed-threshold control that
// fails it), its quantiles, and the distiller under it: records that make the draft worse publish
// nothing, the target's own records publish within a stated number of records.
#include "tests/test_common.hpp"

#include <cmath>
#include <numeric>
#include <random>
#include <set>

#include "models/distillation/distill_buffer.hpp"
#include "models/distillation/adaptation_speed.hpp"
#include "models/distillation/online_distiller.hpp"
#include "models/distillation/sequential_guard.hpp"
#include "tests/spec_fixtures.hpp"

using namespace osd;

TEST_CASE("sequential guard: quantiles of the normal and Student's t", "[distill][guard]") {
  CHECK(normal_quantile(0.975) == Approx(1.959964).epsilon(1e-6));
  CHECK(normal_quantile(0.5) == Approx(0.0).margin(1e-9));
  CHECK(student_t_quantile(0.975, 1) == Approx(12.7062).epsilon(1e-4));
  CHECK(student_t_quantile(0.99, 2) == Approx(6.96456).epsilon(1e-4));
  CHECK(student_t_quantile(0.95, 10) == Approx(1.81246).epsilon(1e-4));
  CHECK(student_t_quantile(0.999, 30) == Approx(3.38518).epsilon(1e-4));
  // Later looks and fewer units demand more standard errors.
  CHECK(sequential_guard_z(2, 30, 0.05) > sequential_guard_z(1, 30, 0.05));
  CHECK(sequential_guard_z(1, 5, 0.05) > sequential_guard_z(1, 30, 0.05));
}

TEST_CASE("sequential guard: over 100 looks at a candidate with no gain it publishes at most alpha "
          "of the time, where a fixed threshold of two standard errors publishes far more",
          "[distill][guard]") {
  // An epoch: 100 looks, each with one more held-out request (3 at the first); a request's gain is
  // N(mu, 0.05). The guard's claim: P(any look publishes | mu = 0) <= alpha.
  auto run = [](double mu, bool fixed_z, int epochs, uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::normal_distribution<double> gain_of_request(mu, 0.05);
    SequentialGuardOptions o;
    o.alpha = 0.05;
    o.min_units = 3;
    o.min_gain = 0;  // the statistical part alone
    int published = 0;
    int64_t looks_to_publish = 0;
    for (int e = 0; e < epochs; ++e) {
      std::vector<double> gains;
      for (int i = 0; i < 2; ++i) gains.push_back(gain_of_request(rng));
      for (int64_t look = 1; look <= 100; ++look) {
        gains.push_back(gain_of_request(rng));
        const double n = static_cast<double>(gains.size());
        const double mean = std::accumulate(gains.begin(), gains.end(), 0.0) / n;
        double ss = 0;
        for (double g : gains) ss += (g - mean) * (g - mean);
        const double se = std::sqrt(ss / (n - 1)) / std::sqrt(n);
        const bool publish = fixed_z ? mean >= 2 * se
                                     : sequential_guard_publishes(mean, se, static_cast<int64_t>(n), look, o);
        if (publish) {
          ++published;
          looks_to_publish += look;
          break;
        }
      }
    }
    return std::pair<double, double>(double(published) / epochs,
                                     published ? double(looks_to_publish) / published : -1.0);
  };
  const int epochs = 2000;
  const double bound = 0.05 + 3 * std::sqrt(0.05 * 0.95 / epochs);
  auto [null_rate, unused] = run(0.0, false, epochs, 1);
  WARN("sequential guard: false-publish rate " << null_rate << " over " << epochs << " epochs");
  CHECK(null_rate <= bound);
  auto [fixed_rate, unused2] = run(0.0, true, epochs, 1);
  WARN("fixed two standard errors: false-publish rate " << fixed_rate);
  CHECK(fixed_rate > 3 * 0.05);  // the control: repeated looks at a fixed threshold are not safe
  // Power: a real gain of 0.03 (0.6 of a request's spread) is published, within ~10 looks.
  // Power: a real gain as large as a request's spread is published, on average within ~10 looks.
  auto [power, looks] = run(0.05, false, 500, 2);
  WARN("sequential guard: gain 0.05 published in " << power * 100 << "% of epochs after " << looks << " looks");
  CHECK(power > 0.99);
  CHECK(looks < 15);
}

namespace {
// Text the target itself samples (temperature 1) after `requests` random 3-token prompts: a
// record at every generated position (context, the target's distribution there). The first
// `heldout` requests are held out, each a unit (source 1, 2, ...); the rest train (sources from
// 1000). Held-out and training records never share a request, so never a prompt.
void sampled_records(Transformer& target, int heldout, int train, int64_t length, uint64_t seed,
                     std::vector<DistillRecord>& train_out, std::vector<DistillRecord>& heldout_out) {
  auto gen = at::detail::createCPUGenerator(seed);
  const int64_t V = target.config().vocab_size;
  for (int i = 0; i < heldout + train; ++i) {
    auto seq = torch::randint(0, V, {1, 3}, gen, torch::kInt64);
    for (int64_t t = 0; t < length; ++t) {
      auto p = torch::softmax(target.forward_full(seq)[0][-1], -1);
      seq = torch::cat({seq, torch::multinomial(p, 1, false, gen).view({1, 1})}, 1);
    }
    auto probs = torch::softmax(target.forward_full(seq)[0], -1);  // [3 + length, V]
    std::vector<int64_t> tokens(seq.data_ptr<int64_t>(), seq.data_ptr<int64_t>() + seq.size(1));
    for (int64_t j = 2; j + 1 < seq.size(1); ++j) {
      auto r = compact_distributions(probs[j].unsqueeze(0), 0)[0];
      r.context.assign(tokens.begin(), tokens.begin() + j + 1);
      r.source = i < heldout ? i + 1 : 1000 + i;
      (i < heldout ? heldout_out : train_out).push_back(r);
    }
  }
}
}  // namespace

TEST_CASE("online distiller with the sequential guard: shuffled targets publish nothing, the "
          "target's records publish within 8 updates of 32 records",
          "[distill][guard]") {
  auto target = osd::test::peaked_model(osd::test::tiny_config(64, 32, 2), 3);
  // A noisy copy of the target: it can represent the target exactly, so the target's records can
  // only help it and wrong ones can only hurt it.
  auto draft = osd::test::perturbed_copy(*target, 4, 0.15);
  std::vector<DistillRecord> train, heldout;
  sampled_records(*target, 24, 40, 24, 8, train, heldout);
  const size_t per_request = heldout.size() / 24;
  DistillOptions o;
  o.lr = 1e-2;
  o.batch = 32;
  o.steps_per_update = 4;
  o.sequential_guard = true;
  o.sequential.min_units = 3;
  // The held-out slice grows by one request an update (a look each), from 3 requests.
  UpdateReport last;
  auto run = [&](const Transformer& start, const std::vector<DistillRecord>& records) {
    OnlineDistiller d(start, o);
    int64_t published_after = -1;
    for (int u = 0; u < 24 && published_after < 0; ++u) {
      const size_t from = (u * 32) % (records.size() - 32);
      const std::vector<DistillRecord> batch(records.begin() + from, records.begin() + from + 32);
      const size_t units = std::min<size_t>(3 + u, 24);
      const std::vector<DistillRecord> slice(heldout.begin(), heldout.begin() + units * per_request);
      auto rep = d.update(batch, slice);
      if (rep.published) published_after = (u + 1) * 32;
      last = rep;
    }
    return published_after;
  };
  const int64_t good = run(*draft, train);
  WARN("the target's records: published after " << good << " records");
  CHECK(good > 0);
  CHECK(good <= 8 * 32);
  // Shuffled: each record keeps its context but gets another record's target distribution.
  auto shuffled = train;
  std::mt19937_64 rng(5);
  std::vector<size_t> perm(train.size());
  std::iota(perm.begin(), perm.end(), 0);
  std::shuffle(perm.begin(), perm.end(), rng);
  for (size_t i = 0; i < train.size(); ++i) {
    shuffled[i].top_ids = train[perm[i]].top_ids;
    shuffled[i].top_probs = train[perm[i]].top_probs;
    shuffled[i].tail = train[perm[i]].tail;
  }
  // A draft close to the target, which wrong records can only make worse: 24 updates of them
  // publish nothing, and the candidate did get worse.
  auto close = osd::test::perturbed_copy(*target, 6, 0.03);
  CHECK(run(*close, shuffled) < 0);
  INFO(last.decision);
  CHECK(last.acceptance_candidate < last.acceptance_current);
}

TEST_CASE("adaptation speed: requests until half of the final gain, none without a gain",
          "[distill][adaptation]") {
  // Static acceptance 0.25 throughout; online climbs from 0.25 by 1/16 a request to 0.75
  // (request 9) and stays (values exact in binary): the final gain is 0.5; the trailing mean of 5
  // gains, (i - 2) / 16 at request i + 1, first reaches 0.25 at request 7.
  std::vector<double> st(40, 0.25), on(40, 0.75);
  for (int i = 0; i <= 8; ++i) on[i] = 0.25 + i / 16.0;
  auto a = osd::adaptation_speed(st, on, 20, 5);
  CHECK(a.tail == 20);
  CHECK(a.final_gain == Approx(0.5));
  CHECK(a.requests_to_half == 7);
  // Smoothing over one request: the first request whose own gain reaches 0.25 (request 5).
  CHECK(osd::adaptation_speed(st, on, 20, 1).requests_to_half == 5);
  // Control: the online draft no better than the static one has no half-gain point.
  auto none = osd::adaptation_speed(st, st, 20, 5);
  CHECK(none.final_gain == Approx(0.0));
  CHECK(none.requests_to_half == -1);
  // A draft that got worse neither.
  std::vector<double> worse(40, 0.1);
  CHECK(osd::adaptation_speed(st, worse).requests_to_half == -1);
  // Fewer requests than the tail: the tail is all of them.
  CHECK(osd::adaptation_speed({0.1, 0.1}, {0.1, 0.5}).tail == 2);
  CHECK_THROWS_WITH(osd::adaptation_speed({0.1}, {0.1, 0.2}),
                    Catch::Matchers::Contains("1 static and 2 online"));
}
