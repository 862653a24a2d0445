// Speculative decoding: greedy output is token-for-token target-only greedy; sampling draws from
// exactly the target's distribution (and the test rejects broken rules); caches roll back to
// exactly the accepted sequence; edge cases.
#include "tests/test_common.hpp"

#include <random>

#include "models/speculation/spec_decoder.hpp"
#include "tests/sampling_reference.hpp"
#include "tests/spec_fixtures.hpp"
#include "tests/stats.hpp"

using namespace osd;
using namespace osd::test;

namespace {

std::vector<GenerationRequest> random_greedy_requests(int n, int64_t vocab, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<GenerationRequest> reqs;
  for (int i = 0; i < n; ++i) {
    GenerationRequest r;
    const int len = 1 + static_cast<int>(rng() % 12);  // one-token prompts included
    for (int j = 0; j < len; ++j) r.prompt.push_back(static_cast<int64_t>(rng() % vocab));
    r.max_new_tokens = 1 + static_cast<int64_t>(rng() % 16);
    r.sampling.temperature = 0;
    reqs.push_back(r);
  }
  return reqs;
}

}  // namespace

TEST_CASE("greedy speculative decoding equals target-only greedy (120 prompts, mixed k)",
          "[spec][greedy]") {
  auto cfg = tiny_config(256, 64, 2);
  auto target = peaked_model(cfg, 1);
  auto good_draft = perturbed_copy(*target, 2, 0.003);  // ~85% argmax agreement
  auto bad_draft = peaked_model(tiny_config(256, 32, 1), 3);
  auto reqs = random_greedy_requests(120, 256, 7);
  std::vector<std::vector<int64_t>> ref;
  for (auto& r : reqs) {
    ref.push_back(greedy_reference(*target, r.prompt, r.max_new_tokens));
    // Keep only trajectories with a top-2 logit margin (exact greedy is defined up to rounding).
    while (min_top2_gap(*target, r.prompt, ref.back()) < 1e-4) {
      r.prompt.push_back((r.prompt.back() * 31 + 7) % 256);
      ref.back() = greedy_reference(*target, r.prompt, r.max_new_tokens);
    }
  }

  struct Run { const char* name; std::shared_ptr<Transformer> draft; int64_t k; bool adaptive; };
  std::vector<Run> runs = {{"perturbed draft, k=4", good_draft, 4, false},
                           {"unrelated draft, k=3", bad_draft, 3, false},
                           {"perturbed draft, adaptive k", good_draft, 6, true},
                           {"unrelated draft, adaptive k", bad_draft, 6, true},
                           {"draft with k=0", good_draft, 0, false},
                           {"no draft", nullptr, 0, false}};
  for (const auto& run : runs) {
    DYNAMIC_SECTION(run.name) {
      SpecOptions o;
      o.max_batch = 8;
      o.max_len = 64;
      o.k = run.k;
      o.adaptive_k = run.adaptive;
      o.k_max = run.k;
      SpecDecoder dec(target, run.draft, o);
      auto outs = dec.generate(reqs);
      int mismatches = 0;
      for (size_t i = 0; i < reqs.size(); ++i) {
        if (outs[i].tokens != ref[i]) ++mismatches;
        CHECK(outs[i].finish == FinishReason::length);
      }
      CHECK(mismatches == 0);
      const auto& st = dec.total_stats();
      INFO("acceptance " << st.acceptance_rate() << " drafts " << st.num_drafts);
      if (run.k > 0 && !run.adaptive) CHECK(st.num_draft_tokens > 0);
      if (run.draft == good_draft && run.k > 0) CHECK(st.acceptance_rate() > 0.5);
    }
  }
}

namespace {

// The exact joint distribution of the first 3 tokens under target-only sampling, from full
// forwards over every prefix: [V^3] with index t1 * V^2 + t2 * V + t3. The per-token
// distributions come from the test's own reference (tests/sampling_reference.hpp: softmax,
// temperature, top-k, top-p written out in double), not from processed_probs, which the
// speculative sampler uses and which is under test here too.
std::vector<double> exact_joint3(Transformer& m, const std::vector<int64_t>& prompt, const SamplingParams& sp) {
  const int64_t V = m.config().vocab_size;
  const ReferenceSampling ref{sp.temperature, sp.top_k, sp.top_p};
  auto probs_after = [&](const std::vector<std::vector<int64_t>>& seqs) {
    std::vector<at::Tensor> rows;
    for (const auto& s : seqs) rows.push_back(torch::tensor(s));
    auto logits = m.forward_full(torch::stack(rows)).select(1, -1).to(torch::kFloat64).contiguous();  // [N, V]
    auto probs = torch::empty_like(logits);                                                          // [N, V]
    for (int64_t i = 0; i < logits.size(0); ++i) {
      const double* row = logits[i].data_ptr<double>();
      auto p = reference_probs(std::vector<double>(row, row + V), ref);
      probs[i].copy_(torch::tensor(p, torch::kFloat64));
    }
    return probs;
  };
  auto p1 = probs_after({prompt})[0];
  std::vector<std::vector<int64_t>> s2, s3;
  for (int64_t a = 0; a < V; ++a) {
    auto s = prompt;
    s.push_back(a);
    s2.push_back(s);
    for (int64_t b = 0; b < V; ++b) {
      auto t = s;
      t.push_back(b);
      s3.push_back(t);
    }
  }
  auto p2 = probs_after(s2), p3 = probs_after(s3);
  std::vector<double> joint(V * V * V);
  for (int64_t a = 0; a < V; ++a)
    for (int64_t b = 0; b < V; ++b)
      for (int64_t c = 0; c < V; ++c)
        joint[(a * V + b) * V + c] = p1[a].item<double>() * p2[a][b].item<double>() * p3[a * V + b][c].item<double>();
  return joint;
}

// Chi-square of the first 3 tokens of n speculative samples against the exact joint.
std::pair<double, double> spec_chi_square(std::shared_ptr<Transformer> target, std::shared_ptr<Transformer> draft,
                                          const SamplingParams& sp, AcceptRule rule, int64_t n) {
  const std::vector<int64_t> prompt = {5};  // one token: no prefill, fast admission
  const int64_t V = target->config().vocab_size;
  auto expected = exact_joint3(*target, prompt, sp);
  SpecOptions o;
  o.max_batch = 4096;
  o.max_len = 8;
  o.k = 2;  // 3 tokens span rounds: accepted, recovered and bonus tokens all occur
  o.rule = rule;
  SpecDecoder dec(target, draft, o);
  std::vector<GenerationRequest> reqs(n);
  for (int64_t i = 0; i < n; ++i) {
    reqs[i].prompt = prompt;
    reqs[i].max_new_tokens = 3;
    reqs[i].sampling = sp;
    reqs[i].sampling.seed = 1000 + i;
  }
  auto outs = dec.generate(reqs);
  std::vector<int64_t> counts(V * V * V);
  int64_t wrong_length = 0;
  for (const auto& o : outs) {
    if (o.tokens.size() != 3) { ++wrong_length; continue; }
    ++counts[(o.tokens[0] * V + o.tokens[1]) * V + o.tokens[2]];
  }
  REQUIRE(wrong_length == 0);
  auto [stat, dof] = chi_square(counts, expected);
  const double crit = chi_square_critical_1e3(dof);
  WARN("rule " << int(rule) << " T=" << sp.temperature << " top_p=" << sp.top_p << ": chi2 " << stat
       << " (dof " << dof << ", critical at 1e-3 " << crit << "), acceptance "
       << dec.total_stats().acceptance_rate());
  return {stat, crit};
}

}  // namespace

TEST_CASE("speculative sampling draws exactly the target's distribution (200k samples, G = chi2)",
          "[spec][stats]") {
  auto target = peaked_model(tiny_config(16, 32, 2), 11, 0.3);
  auto draft = peaked_model(tiny_config(16, 32, 1), 12, 0.3);
  const int64_t n = 200000;
  SamplingParams plain, hot, nucleus;
  hot.temperature = 0.7;
  nucleus.top_p = 0.8;
  for (auto [name, sp] : {std::pair{"plain", plain}, {"temperature 0.7", hot}, {"top_p 0.8", nucleus}}) {
    DYNAMIC_SECTION(name) {
      auto [stat, crit] = spec_chi_square(target, draft, sp, AcceptRule::exact, n);
      INFO(name << ": chi2 " << stat << " critical " << crit);
      CHECK(stat < crit);
    }
  }
  // Controls: the same test must reject wrong rules, or it has no teeth.
  SECTION("control: accept with min(1, q/p) is rejected") {
    auto [stat, crit] = spec_chi_square(target, draft, plain, AcceptRule::broken_q_over_p, n);
    INFO("chi2 " << stat << " critical " << crit);
    CHECK(stat > crit);
  }
  SECTION("control: resampling from p instead of the residual is rejected") {
    auto [stat, crit] = spec_chi_square(target, draft, plain, AcceptRule::broken_resample_from_p, n);
    INFO("chi2 " << stat << " critical " << crit);
    CHECK(stat > crit);
  }
}
