// Proposer / scorer bookkeeping: after any accept pattern both caches hold exactly the accepted
// sequence; rejection sampler edge cases; stop conditions inside a round.
#include "tests/test_common.hpp"

#include "models/speculation/spec_decoder.hpp"
#include "tests/spec_fixtures.hpp"

using namespace osd;
using namespace osd::test;

TEST_CASE("rollback: after any accept pattern both caches equal a fresh forward", "[spec][rollback]") {
  auto target = peaked_model(tiny_config(64, 32, 2), 21);
  auto draft = peaked_model(tiny_config(64, 32, 1), 22);
  TargetScorer scorer(target, 3, 96);
  DraftProposer proposer(draft, 3, 96);
  std::vector<int64_t> seq = {3, 14, 15, 9, 2};
  SamplingParams sp;  // temperature 1: q is the draft's softmax, comparable to a full forward
  scorer.add(7, seq);
  proposer.add(7, seq, sp);
  const std::vector<int64_t> ks = {3, 1, 0, 3, 2, 3, 0, 0, 4, 1};
  int64_t next_token = 1;
  double worst_p = 0, worst_q = 0;
  for (size_t round = 0; round < 4 * ks.size(); ++round) {
    const int64_t k = ks[round % ks.size()];
    auto prop = proposer.propose({7}, {k});
    REQUIRE(prop.host_tokens[0].size() == static_cast<size_t>(k));
    // q at draft step j equals the draft's full forward over seq + d_1..d_{j}.
    auto ext = seq;
    for (int64_t j = 0; j < k; ++j) {
      auto ref = torch::softmax(draft->forward_full(torch::tensor(ext).view({1, -1}))[0][-1], -1);
      worst_q = std::max(worst_q, max_abs_diff(prop.probs[0][j], ref));
      ext.push_back(prop.host_tokens[0][j]);
    }
    // The scoring pass equals the target's full forward over seq + d_1..d_k at the last k+1.
    auto logits = scorer.score(prop);                                     // [1, k + 1, V]
    auto full = target->forward_full(torch::tensor(ext).view({1, -1}))[0];
    worst_p = std::max(worst_p, max_abs_diff(logits[0], full.narrow(0, full.size(0) - (k + 1), k + 1)));
    // Any accept pattern: cycle n through 0, 1, k-1, k; the next token is arbitrary.
    const int64_t patterns[] = {0, 1, k - 1, k};
    const int64_t n = std::clamp<int64_t>(patterns[round % 4], 0, k);
    Verdict v{7, k, n, {}};
    v.emitted.assign(prop.host_tokens[0].begin(), prop.host_tokens[0].begin() + n);
    v.emitted.push_back(next_token = (next_token * 17 + 5) % 64);
    scorer.commit(v);
    proposer.commit(v);
    seq.insert(seq.end(), v.emitted.begin(), v.emitted.end());
    REQUIRE(scorer.length(7) == static_cast<int64_t>(seq.size()));
  }
  CHECK(worst_p <= 1e-4);
  CHECK(worst_q <= 1e-5);
  // Errors leave state usable: a commit without a proposal, an unknown sequence.
  CHECK_THROWS_WITH(scorer.commit(Verdict{7, 0, 0, {1}}), Catch::Contains("does not match"));
  CHECK_THROWS_WITH(proposer.propose({99}, {1}), Catch::Contains("unknown sequence"));
  CHECK_THROWS_WITH(proposer.propose({7}, {1000}), Catch::Contains("does not fit"));
  auto prop = proposer.propose({7}, {2});
  CHECK(prop.host_tokens[0].size() == 2);
}

TEST_CASE("rejection sampler: all rejected, all accepted, k = 0", "[spec][edge]") {
  const int64_t V = 8, K = 3;
  auto onehot = [&](std::vector<int64_t> ids) {
    auto t = torch::zeros({static_cast<int64_t>(ids.size()), V});
    for (size_t i = 0; i < ids.size(); ++i) t[i][ids[i]] = 1;
    return t;
  };
  // Draft always proposes token 1; target puts all mass on token 2: every proposal is rejected
  // at position 0 and the recovered token is 2.
  RejectionInput none{torch::full({1, K}, 1, torch::kInt64), onehot({1, 1, 1}).unsqueeze(0),
                      onehot({2, 2, 2, 2}).unsqueeze(0), {K}, {0.1, 0.1, 0.1}, {0.3}};
  auto r0 = rejection_sample(none);
  CHECK(r0.accepted[0] == 0);
  CHECK(r0.next_token[0] == 2);
  // p == q: everything accepted; the bonus comes from p at position K (token 6).
  auto q = torch::softmax(torch::randn({1, K, V}), -1);
  auto p = torch::cat({q, onehot({6}).unsqueeze(0)}, 1);
  RejectionInput all{torch::tensor({{0, 1, 2}}), q, p, {K}, {0.99, 0.99, 0.99}, {0.5}};
  auto r1 = rejection_sample(all);
  CHECK(r1.accepted[0] == K);
  CHECK(r1.next_token[0] == 6);
  // k = 0 in a padded batch: plain sampling from p[0].
  RejectionInput zero{torch::zeros({2, K}, torch::kInt64), q.expand({2, K, V}).contiguous(),
                      p.expand({2, K + 1, V}).contiguous(), {0, K}, std::vector<double>(2 * K, 0.99), {0.5, 0.5}};
  zero.p[0][0] = onehot({4})[0];
  auto r2 = rejection_sample(zero);
  CHECK(r2.accepted[0] == 0);
  CHECK(r2.next_token[0] == 4);
  CHECK(r2.accepted[1] == K);
  CHECK_THROWS_WITH(rejection_sample(RejectionInput{torch::zeros({1, 2}, torch::kInt64), q, p, {K}, {}, {}}),
                    Catch::Contains("shapes disagree"));
}

TEST_CASE("eos inside the proposals, max tokens mid-proposal, stop strings across tokens",
          "[spec][edge]") {
  auto target = peaked_model(tiny_config(256, 64, 2), 1);
  auto draft = perturbed_copy(*target, 2, 0.003);
  SpecOptions o;
  o.max_batch = 4;
  o.max_len = 64;
  o.k = 4;
  // Byte-level text: token t is the byte t.
  TokenText bytes = [](int64_t t) { return std::string(1, static_cast<char>(t)); };
  SpecDecoder dec(target, draft, o, bytes);
  std::vector<int64_t> prompt = {10, 20, 30};
  auto ref = greedy_reference(*target, prompt, 20);
  SECTION("eos: output is target greedy up to and including the first eos") {
    GenerationRequest r;
    r.prompt = prompt;
    r.sampling.temperature = 0;
    r.max_new_tokens = 20;
    r.eos_ids = {ref[5]};
    auto out = dec.generate({r})[0];
    auto expected = greedy_reference(*target, prompt, 20, r.eos_ids);
    CHECK(out.tokens == expected);
    CHECK(out.finish == FinishReason::eos);
  }
  SECTION("max_new_tokens smaller than k: exactly the first tokens") {
    for (int64_t n : {1, 2, 3, 5}) {
      GenerationRequest r;
      r.prompt = prompt;
      r.sampling.temperature = 0;
      r.max_new_tokens = n;
      auto out = dec.generate({r})[0];
      CHECK(out.tokens == std::vector<int64_t>(ref.begin(), ref.begin() + n));
      CHECK(out.finish == FinishReason::length);
    }
  }
  SECTION("a stop string spanning two tokens cuts the text before it") {
    GenerationRequest r;
    r.prompt = prompt;
    r.sampling.temperature = 0;
    r.max_new_tokens = 20;
    std::string stop = bytes(ref[6]) + bytes(ref[7]);
    // The expected cut is the first occurrence in the reference text.
    std::string text;
    for (auto t : ref) text += bytes(t);
    r.stop = {stop};
    auto out = dec.generate({r})[0];
    CHECK(out.finish == FinishReason::stop);
    CHECK(out.text == text.substr(0, text.find(stop)));
  }
  SECTION("one-token prompt") {
    GenerationRequest r;
    r.prompt = {42};
    r.sampling.temperature = 0;
    r.max_new_tokens = 9;
    CHECK(dec.generate({r})[0].tokens == greedy_reference(*target, {42}, 9));
  }
  SECTION("bad requests are refused with a message and change nothing") {
    GenerationRequest r;
    CHECK_THROWS_WITH(dec.add(1, r), Catch::Contains("empty prompt"));
    r.prompt = {1, 300};
    CHECK_THROWS_WITH(dec.add(1, r), Catch::Contains("outside the vocabulary"));
    r.prompt = {1};
    r.sampling.top_p = 2;
    CHECK_THROWS_WITH(dec.add(1, r), Catch::Contains("top_p"));
    r.sampling.top_p = 1;
    r.prompt.assign(64, 1);
    CHECK_THROWS_WITH(dec.add(1, r), Catch::Contains("no room"));
    r.prompt = {1};
    r.stop = {""};
    CHECK_THROWS_WITH(dec.add(1, r), Catch::Contains("stop strings"));
    r.stop = {};
    dec.add(1, r);
    CHECK_THROWS_WITH(dec.add(1, r), Catch::Contains("duplicate"));
    while (!dec.idle()) dec.step();
    CHECK(dec.take(1).has_value());
  }
}

TEST_CASE("proposer: a k = 0 verdict commits without a proposal, as after a proposal of 0 tokens",
          "[spec][adaptive]") {
  // Rounds without draft tokens skip the drafter; their verdicts still reach it.
  auto draft = peaked_model(tiny_config(64, 32, 2), 1);
  SamplingParams greedy;
  greedy.temperature = 0;
  const std::vector<int64_t> seq = {5, 9, 3, 7, 1};
  DraftProposer asked(draft, 2, 64), skipped(draft, 2, 64);
  asked.add(1, seq, greedy);
  skipped.add(1, seq, greedy);
  for (int64_t next : {11, 23, 42}) {
    asked.propose({1}, {0});
    Verdict v{1, 0, 0, {next}};
    asked.commit(v);
    skipped.commit(v);
  }
  CHECK(asked.propose({1}, {3}).host_tokens == skipped.propose({1}, {3}).host_tokens);
  DraftProposer fresh(draft, 2, 64);
  fresh.add(2, seq, greedy);
  CHECK_THROWS_WITH(fresh.commit(Verdict{2, 2, 0, {5}}), Catch::Contains("no proposal"));
}

TEST_CASE("proposer: a weight swap refreshes the cache, so proposals equal a fresh draft's", "[spec][swap]") {
  auto cfg = tiny_config(64, 32, 2);
  auto old_draft = peaked_model(cfg, 1), new_draft = peaked_model(cfg, 2);
  SamplingParams greedy;
  greedy.temperature = 0;
  std::vector<int64_t> seq = {5, 9, 3, 7, 1};
  for (bool in_flight : {false, true}) {
    DYNAMIC_SECTION((in_flight ? "swap while a proposal awaits commit" : "swap between rounds")) {
      DraftProposer p(old_draft, 2, 64);
      p.add(1, seq, greedy);
      auto history = seq;
      auto round = [&](int64_t k, int64_t accept) {  // accept the first `accept` drafts, then token 11
        auto prop = p.propose({1}, {k});
        Verdict v{1, k, accept, {}};
        for (int64_t i = 0; i < accept; ++i) v.emitted.push_back(prop.host_tokens[0][i]);
        v.emitted.push_back(11);
        history.insert(history.end(), v.emitted.begin(), v.emitted.end());
        return v;
      };
      p.commit(round(3, 1));
      p.commit(round(3, 3));  // all accepted: two tokens pending
      if (in_flight) {
        auto v = round(2, 0);
        p.set_model(new_draft);
        p.commit(v);
      } else {
        p.set_model(new_draft);
      }
      CHECK(p.refreshes() == 1);
      DraftProposer fresh(new_draft, 2, 64);
      fresh.add(1, history, greedy);
      auto a = p.propose({1}, {3}), b = fresh.propose({1}, {3});
      CHECK(a.host_tokens == b.host_tokens);
      CHECK(max_abs_diff(a.probs, b.probs) < 1e-5);
      // Control: without the refresh the stale keys/values give other probabilities.
      DraftProposer stale(old_draft, 2, 64);
      stale.add(1, history, greedy);
      stale.set_model(new_draft, /*refresh_cache=*/false);
      CHECK(max_abs_diff(stale.propose({1}, {3}).probs, b.probs) > 1e-3);
    }
  }
}
