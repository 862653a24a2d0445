// models/sampling: seeded reproducibility, the allowed set of top-k / top-p, and the draw itself
// matching its probabilities (with a control showing the check rejects a biased sampler).
#include "tests/test_common.hpp"

#include <set>

#include "models/speculation/rejection_sampler.hpp"
#include "models/speculation/sampling.hpp"
#include "tests/stats.hpp"

using namespace osd;

namespace {
at::Tensor random_logits(int64_t n, int64_t v, uint64_t seed) {
  auto gen = at::detail::createCPUGenerator(seed);
  return at::normal(0.0, 2.0, {n, v}, gen);
}

// The allowed set computed independently of processed_probs, on the host, in double.
std::set<int64_t> allowed_set(const at::Tensor& row, const SamplingParams& p) {
  const int64_t V = row.size(0);
  std::vector<std::pair<double, int64_t>> v;
  for (int64_t i = 0; i < V; ++i) v.push_back({row[i].item<double>() / p.temperature, i});
  std::sort(v.begin(), v.end(), [](auto& a, auto& b) { return a.first > b.first; });
  const int64_t k = p.top_k > 0 ? std::min(p.top_k, V) : V;
  double z = 0;
  for (int64_t i = 0; i < k; ++i) z += std::exp(v[i].first - v[0].first);
  std::set<int64_t> keep;
  double mass = 0;
  for (int64_t i = 0; i < k; ++i) {
    if (mass >= p.top_p - 1e-6) break;  // tolerance: float32 vs double near the boundary
    keep.insert(v[i].second);
    mass += std::exp(v[i].first - v[0].first) / z;
  }
  return keep;
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
  auto probs = processed_probs(random_logits(1, V, 5), {SamplingParams{}});
  std::vector<double> p(V);
  for (int64_t i = 0; i < V; ++i) p[i] = probs[0][i].item<double>();
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
