// models/sampling: seeded reproducibility, the allowed set of top-k / top-p, and the draw itself
// matching its probabilities (with a control showing the check rejects a biased sampler).
#include "tests/test_common.hpp"

#include <map>
#include <set>

#include "models/speculation/rejection_sampler.hpp"
#include "models/speculation/sampling.hpp"
#include "tests/sampling_reference.hpp"
#include "tests/stats.hpp"

using namespace osd;
using osd::test::reference_probs;
using osd::test::ReferenceSampling;

namespace {
at::Tensor random_logits(int64_t n, int64_t v, uint64_t seed) {
  auto gen = at::detail::createCPUGenerator(seed);
  return at::normal(0.0, 2.0, {n, v}, gen);
}

std::vector<double> row_values(const at::Tensor& row) {  // row: [V] -> doubles
  auto d = row.to(torch::kFloat64).contiguous();
  return std::vector<double>(d.data_ptr<double>(), d.data_ptr<double>() + d.numel());
}

ReferenceSampling reference_of(const SamplingParams& p) { return {p.temperature, p.top_k, p.top_p}; }

// The allowed set of the written-out reference (tests/sampling_reference.hpp), not of
// processed_probs.
std::set<int64_t> allowed_set(const at::Tensor& row, const SamplingParams& p) {
  auto ref = reference_probs(row_values(row), reference_of(p));
  std::set<int64_t> keep;
  for (size_t i = 0; i < ref.size(); ++i)
    if (ref[i] > 0) keep.insert(static_cast<int64_t>(i));
  return keep;
}

// Largest difference between processed probabilities and the reference, where tokens of equal
// logits may trade places (processed_probs's sort is not stable, the reference's is): tokens of
// a unique logit compare one to one, a group of equal logits compares as sorted values.
double diff_up_to_ties(const at::Tensor& processed, const std::vector<double>& ref,
                       const std::vector<double>& logits) {
  auto got = row_values(processed);
  std::map<double, std::pair<std::vector<double>, std::vector<double>>> groups;
  for (size_t i = 0; i < logits.size(); ++i) {
    groups[logits[i]].first.push_back(got[i]);
    groups[logits[i]].second.push_back(ref[i]);
  }
  double worst = 0;
  for (auto& [logit, g] : groups) {
    std::sort(g.first.begin(), g.first.end());
    std::sort(g.second.begin(), g.second.end());
    for (size_t i = 0; i < g.first.size(); ++i)
      worst = std::max(worst, std::abs(g.first[i] - g.second[i]));
  }
  return worst;
}

int64_t kept(const std::vector<double>& probs) {
  return std::count_if(probs.begin(), probs.end(), [](double p) { return p > 0; });
}
}  // namespace

TEST_CASE("processed probs: rows sum to 1, greedy is one-hot argmax, zero outside the set",
          "[sampling]") {
  auto logits = random_logits(4, 50, 1);
  std::vector<SamplingParams> params(4);
  params[0].temperature = 0;
  params[1].temperature = 0.7;
  params[2].top_k = 5;
  params[3].top_p = 0.6;
  auto probs = processed_probs(logits, params);
  REQUIRE(probs.sizes() == logits.sizes());
  CHECK(osd::test::max_abs_diff(probs.sum(-1), torch::ones({4})) < 1e-5);
  CHECK(probs[0].argmax().item<int64_t>() == logits[0].argmax().item<int64_t>());
  CHECK(probs[0].max().item<float>() == 1.0f);
  CHECK(osd::test::max_abs_diff(probs[1], torch::softmax(logits[1] / 0.7, -1)) < 1e-6);
  CHECK((probs[2] > 0).sum().item<int64_t>() == 5);
  auto keep = allowed_set(logits[3], params[3]);
  CHECK((probs[3] > 0).sum().item<int64_t>() == static_cast<int64_t>(keep.size()));
}

TEST_CASE("processed probs equal the written-out reference: temperature, top-k, top-p, edges",
          "[sampling]") {
  // A grid of settings on random rows: the same distribution to float32 rounding, and the same
  // support (a token kept by one and not the other would show as a difference of its mass).
  auto rows = random_logits(6, 64, 31);
  int compared = 0;
  for (double t : {0.5, 1.0, 1.7})
    for (int64_t k : {0, 1, 5, 40})
      for (double p : {1.0, 0.9, 0.5, 0.1, 1e-9}) {
        SamplingParams sp;
        sp.temperature = t;
        sp.top_k = k;
        sp.top_p = p;
        auto probs = processed_probs(rows, {sp});
        for (int64_t r = 0; r < rows.size(0); ++r) {
          auto ref = reference_probs(row_values(rows[r]), reference_of(sp));
          INFO("T " << t << ", top_k " << k << ", top_p " << p << ", row " << r);
          CHECK(osd::test::max_abs_diff(probs[r], torch::tensor(ref, torch::kFloat64)) < 2e-6);
          CHECK((probs[r] > 0).sum().item<int64_t>() == kept(ref));
          ++compared;
        }
      }
  CHECK(compared == 3 * 4 * 5 * 6);
  auto one_row = [](std::vector<double> logits, SamplingParams sp) {
    auto t = torch::tensor(logits, torch::kFloat64).to(torch::kFloat32).view({1, -1});
    return std::pair{processed_probs(t, {sp})[0], reference_probs(logits, reference_of(sp))};
  };
  SECTION("p = 1 keeps every token, even where float32 mass has reached 1 before the tail") {
    // Token 0 holds 1 - 2e-9 of the mass: 1.0 in float32, so the tail lies beyond a full mass.
    const std::vector<double> logits = {20, 0, -5, -10, -20, -30};
    SamplingParams sp;
    sp.top_p = 1.0;
    auto [got, ref] = one_row(logits, sp);
    CHECK(kept(ref) == 6);
    CHECK((got > 0).sum().item<int64_t>() == 6);
    CHECK(diff_up_to_ties(got, ref, logits) < 1e-7);
    sp.top_p = 0.999;  // control: below 1 the tail goes
    auto [cut, cut_ref] = one_row(logits, sp);
    CHECK(kept(cut_ref) == 1);
    CHECK((cut > 0).sum().item<int64_t>() == 1);
  }
  SECTION("a tiny p keeps the most likely token alone") {
    SamplingParams sp;
    sp.top_p = 1e-9;
    sp.temperature = 1.3;
    auto probs = processed_probs(rows, {sp});
    for (int64_t r = 0; r < rows.size(0); ++r) {
      CHECK(probs[r].max().item<float>() == 1.0f);
      CHECK(probs[r].argmax().item<int64_t>() == rows[r].argmax().item<int64_t>());
      CHECK(kept(reference_probs(row_values(rows[r]), reference_of(sp))) == 1);
    }
    // Two tokens tied for the top: one of them, with all the mass.
    const std::vector<double> tied = {1, 5, 5, 0};
    auto [got, ref] = one_row(tied, sp);
    CHECK((got > 0).sum().item<int64_t>() == 1);
    CHECK(got[1].item<float>() + got[2].item<float>() == 1.0f);
    CHECK(diff_up_to_ties(got, ref, tied) < 1e-7);
  }
  SECTION("ties at the top-p cut: one of the tied tokens is kept, with the reference's mass") {
    // softmax(2, 1, 1, 0) = 0.534, 0.197, 0.197, 0.072: with p = 0.6 the first tied token is kept
    // (0.534 before it) and the second is not (0.731 before it).
    const std::vector<double> logits = {2, 1, 1, 0};
    SamplingParams sp;
    sp.top_p = 0.6;
    auto [got, ref] = one_row(logits, sp);
    CHECK(kept(ref) == 2);
    CHECK((got > 0).sum().item<int64_t>() == 2);
    CHECK(got[0].item<double>() == Approx(std::exp(1.0) / (std::exp(1.0) + 1)).epsilon(1e-6));
    CHECK((got[1].item<float>() > 0) != (got[2].item<float>() > 0));  // exactly one of the tie
    CHECK(got[3].item<float>() == 0.0f);
    CHECK(diff_up_to_ties(got, ref, logits) < 1e-6);
    // Control: the measure sees a wrong cut (both tied tokens kept at p = 0.75).
    sp.top_p = 0.75;
    auto [wide, wide_ref] = one_row(logits, sp);
    CHECK(kept(wide_ref) == 3);
    CHECK(diff_up_to_ties(wide, ref, logits) > 0.05);
  }
  SECTION("ties at the top-k cut: k tokens, the tied ones interchangeable") {
    const std::vector<double> logits = {1, 3, 1, 1, 0};
    SamplingParams sp;
    sp.top_k = 2;
    auto [got, ref] = one_row(logits, sp);
    CHECK(kept(ref) == 2);
    CHECK((got > 0).sum().item<int64_t>() == 2);
    CHECK(got[1].item<float>() > 0);
    CHECK(got[4].item<float>() == 0.0f);
    CHECK(diff_up_to_ties(got, ref, logits) < 1e-6);
  }
}

TEST_CASE("top-k / top-p never emit a token outside the allowed set (10k draws each)",
          "[sampling]") {
  const int64_t V = 64, draws = 10000;
  std::vector<SamplingParams> cases(5);
  cases[0].top_k = 1;
  cases[1].top_k = 7;
  cases[2].top_p = 0.5;
  cases[3].top_p = 0.9, cases[3].temperature = 1.5;
  cases[4].top_k = 20, cases[4].top_p = 0.3, cases[4].temperature = 0.5;
  for (size_t c = 0; c < cases.size(); ++c) {
    auto row = random_logits(1, V, 10 + c);
    auto keep = allowed_set(row[0], cases[c]);
    REQUIRE(!keep.empty());
    auto probs = processed_probs(row.expand({draws, V}), {cases[c]});
    RequestRng rng(c);
    auto u = torch::tensor(rng.uniforms(draws), torch::kFloat64);
    auto tokens = sample_from_probs(probs, u);
    std::set<int64_t> seen;
    int64_t outside = 0;
    for (int64_t i = 0; i < draws; ++i) {
      auto t = tokens[i].item<int64_t>();
      seen.insert(t);
      outside += keep.count(t) == 0;
    }
    INFO("case " << c << ": allowed " << keep.size() << ", seen " << seen.size());
    CHECK(outside == 0);
    CHECK(seen.size() == keep.size());  // and every allowed token does occur
  }
}

TEST_CASE("seeded sampling is reproducible and seeds differ", "[sampling]") {
  auto logits = random_logits(1, 100, 3);
  auto run = [&](uint64_t seed) {
    RequestRng rng(seed);
    std::vector<int64_t> out;
    SamplingParams p;
    p.seed = seed;
    for (int i = 0; i < 200; ++i) out.push_back(sample_tokens(logits, {p}, {&rng})[0]);
    return out;
  };
  CHECK(run(42) == run(42));
  CHECK(run(42) != run(43));
}

TEST_CASE("inverse-CDF draws match their probabilities, a biased sampler is rejected",
          "[sampling][stats]") {
  const int64_t V = 16, n = 200000;
  auto logits = random_logits(1, V, 5);
  auto probs = processed_probs(logits, {SamplingParams{}});
  // The expected probabilities from the reference (plain softmax in double), not from `probs`.
  const auto p = reference_probs(row_values(logits[0]), ReferenceSampling{});
  RequestRng rng(99);
  auto u = torch::tensor(rng.uniforms(n), torch::kFloat64);
  auto count = [&](const at::Tensor& probs_used) {
    auto t = sample_from_probs(probs_used.expand({n, V}), u);
    auto c = torch::bincount(t, {}, V);
    return std::vector<int64_t>(c.data_ptr<int64_t>(), c.data_ptr<int64_t>() + V);
  };
  auto [stat, dof] = osd::test::chi_square(count(probs), p);
  INFO("chi2 " << stat << " dof " << dof);
  CHECK(stat < osd::test::chi_square_critical_1e3(dof));
  // Control: a sampler that flattens the distribution slightly (temperature 1.1) must fail.
  auto biased = torch::softmax(torch::log(probs) / 1.1, -1);
  auto [bad, bdof] = osd::test::chi_square(count(biased), p);
  INFO("control chi2 " << bad);
  CHECK(bad > osd::test::chi_square_critical_1e3(bdof));
}

TEST_CASE("sampling params: absurd values are named", "[sampling][errors]") {
  SamplingParams p;
  CHECK(p.validate().empty());
  p.temperature = -1;
  CHECK(p.validate().find("temperature") != std::string::npos);
  p = {};
  p.top_p = 1.5;
  CHECK(p.validate().find("top_p") != std::string::npos);
  p = {};
  p.top_k = -2;
  CHECK(p.validate().find("top_k") != std::string::npos);
  CHECK_THROWS_WITH(processed_probs(torch::zeros({3}), {p}), Catch::Contains("dimensions"));
  CHECK_THROWS_WITH(processed_probs(torch::zeros({3, 4}), {p, p}), Catch::Contains("params for"));
}

TEST_CASE("all-greedy verification shortcut gives the rule's verdicts, k = 0 rows included",
          "[sampling]") {
  const int64_t B = 6, K = 4, V = 50;
  auto gen = at::detail::createCPUGenerator(21);
  for (int trial = 0; trial < 20; ++trial) {
    auto logits = torch::randn({B, K + 1, V}, gen);  // [B, K + 1, V]
    auto best = logits.argmax(-1);                   // [B, K + 1]
    Proposals prop;
    prop.k = {4, 3, 0, 4, 1, 2};
    prop.tokens = torch::zeros({B, K}, torch::kInt64);
    prop.host_tokens.assign(B, {});
    for (int64_t i = 0; i < B; ++i) {
      prop.ids.push_back(i);
      const int64_t agree =
          (trial + i) % (K + 1);  // the first `agree` drafts are the target's argmax
      for (int64_t j = 0; j < prop.k[i]; ++j) {
        int64_t t = best[i][j].item<int64_t>();
        if (j >= agree) t = (t + 1 + j) % V;
        prop.tokens[i][j] = t;
        prop.host_tokens[i].push_back(t);
      }
    }
    auto valid = torch::arange(K).unsqueeze(0) < torch::tensor(prop.k).unsqueeze(1);
    prop.probs = torch::zeros({B, K, V}).scatter_(2, prop.tokens.unsqueeze(-1),
                                                  valid.unsqueeze(-1).to(torch::kFloat32));
    std::vector<SamplingParams> params(B);
    for (auto& sp : params) sp.temperature = 0;  // greedy
    for (int64_t i = 0; i < B; ++i) params[i].seed = 100 + i;
    const std::vector<int64_t> positions = {7, 9, 11, 13, 15, 17};
    auto fast = verify_round(prop, logits, params, positions);
    CHECK(!fast.target_probs.defined());  // the shortcut ran
    // The rule itself, on the processed (one-hot) distributions.
    std::vector<SamplingParams> flat(B * (K + 1), params[0]);
    auto p = processed_probs(logits.view({B * (K + 1), V}), flat).view({B, K + 1, V});
    RejectionInput in{prop.tokens, prop.probs, p, prop.k, {}, {}};
    for (int64_t i = 0; i < B; ++i) {
      for (int64_t j = 0; j < K; ++j)
        in.u_accept.push_back(position_uniform(params[i].seed, positions[i] + j, DrawPurpose::accept));
      in.u_final.push_back(position_uniform(params[i].seed, positions[i], DrawPurpose::target));
    }
    auto rule = rejection_sample(in);
    INFO("trial " << trial);
    CHECK(fast.out.accepted == rule.accepted);
    CHECK(fast.out.next_token == rule.next_token);
  }
}
