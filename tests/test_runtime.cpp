// The actor runtime through its embedding API: many concurrent clients get exactly target-only
// greedy output, each request is answered exactly once, streaming matches the result, cancel
// and shutdown lose nothing, bad input gets an error code and the runtime keeps serving.
#include "tests/test_common.hpp"

#include <unistd.h>

#include <atomic>
#include <fstream>
#include <mutex>
#include <random>
#include <set>
#include <nlohmann/json.hpp>
#include <thread>
#include <tuple>

#include "models/common/files.hpp"
#include "models/weights/hf_checkpoint.hpp"
#include "models/text/utf8.hpp"
#include "runtime/model_source.hpp"
#include "runtime/runtime.hpp"
#include "tests/spec_fixtures.hpp"

using namespace osd;
using namespace osd::test;

namespace {

struct Pair {
  std::shared_ptr<Transformer> target, draft;
};
Pair& models() {
  static Pair p = [] {
    auto t = peaked_model(tiny_config(256, 64, 2), 1);
    return Pair{t, perturbed_copy(*t, 2, 0.003)};
  }();
  return p;
}

std::unique_ptr<Runtime> make_runtime(bool with_draft, int64_t max_in_flight = 256) {
  RuntimeOptions o;
  o.target = models().target;
  o.draft = with_draft ? models().draft : nullptr;
  o.max_batch = 8;
  o.max_len = 96;
  o.max_in_flight = max_in_flight;
  o.threads = 2;
  o.token_text = [](int64_t t) { return std::string(1, static_cast<char>(t)); };
  std::string err;
  auto rt = Runtime::create(o, &err);
  REQUIRE(rt != nullptr);
  return rt;
}

GenerateParams greedy(std::vector<int64_t> prompt, int64_t n) {
  GenerateParams p;
  p.prompt_tokens = std::move(prompt);
  p.max_new_tokens = n;
  p.temperature = 0;
  return p;
}

}  // namespace

TEST_CASE("runtime: 16 client threads x 8 requests, greedy equals target-only, each answered once",
          "[runtime]") {
  for (bool with_draft : {true, false}) {
    DYNAMIC_SECTION((with_draft ? "speculative" : "target only")) {
      auto rt = make_runtime(with_draft);
      const int clients = 16, per_client = 8;
      auto [prompts, refs] = greedy_cases(*models().target, clients * per_client, 10, 12, 5);
      std::vector<GenerateResult> results(prompts.size());
      std::vector<std::string> streamed(prompts.size());
      std::vector<std::thread> threads;
      std::mutex mu;
      for (int c = 0; c < clients; ++c)
        threads.emplace_back([&, c] {
          for (int r = 0; r < per_client; ++r) {
            const int i = c * per_client + r;
            auto h = rt->submit(greedy(prompts[i], 12), [&, i](const TokenChunk& ch) {
              std::lock_guard<std::mutex> g(mu);  // the test's own bookkeeping, not the runtime's
              for (auto t : ch.tokens) streamed[i].push_back(static_cast<char>(t));
            });
            results[i] = h->get();
          }
        });
      for (auto& t : threads) t.join();
      int wrong = 0, not_ok = 0, stream_mismatch = 0;
      std::set<std::string> ids;
      for (size_t i = 0; i < prompts.size(); ++i) {
        not_ok += !results[i].ok();
        wrong += results[i].tokens != refs[i];
        std::string text;
        for (auto t : results[i].tokens) text.push_back(static_cast<char>(t));
        stream_mismatch += streamed[i] != text;
        ids.insert(results[i].id);
      }
      CHECK(not_ok == 0);
      CHECK(wrong == 0);
      CHECK(stream_mismatch == 0);
      CHECK(ids.size() == prompts.size());
      auto stats = nlohmann::json::parse(rt->stats_json());
      CHECK(stats["metrics"]["requests_finished"]["length"] == static_cast<int>(prompts.size()));
      if (with_draft) CHECK(stats["metrics"]["num_accepted_tokens"].get<int64_t>() > 0);
      rt->shutdown();
    }
  }
}

TEST_CASE("runtime: at k = 0 the target's distributions still reach the distiller's buffer",
          "[runtime][adaptive][online]") {
  // Every round plain (k_override 0): no message reaches the drafter, yet every
  // online.record_plain_every-th token of a sequence is recorded for the distiller, so a draft
  // keeps learning while speculation is off. Control: with record_plain_every = 0 nothing is.
  auto [prompts, refs] = greedy_cases(*models().target, 3, 8, 40, 12);
  for (int64_t every : {int64_t{4}, int64_t{0}}) {
    RuntimeOptions o;
    o.target = models().target;
    o.draft = models().draft;
    o.max_batch = 4;
    o.max_len = 128;
    o.threads = 2;
    o.k_override = [](int64_t, int64_t, int64_t) { return int64_t{0}; };
    o.online.enabled = true;
    o.online.record_plain_every = every;
    o.online.min_new_records = 1 << 20;  // no update: the buffer only collects
    std::string err;
    auto rt = Runtime::create(o, &err);
    REQUIRE(rt != nullptr);
    int wrong = 0;
    for (size_t i = 0; i < prompts.size(); ++i)
      wrong += rt->submit(greedy(prompts[i], 40))->get().tokens != refs[i];
    CHECK(wrong == 0);
    auto stats = nlohmann::json::parse(rt->stats_json());
    INFO(stats["verifier"].dump() << " " << stats["buffer"].dump());
    CHECK(stats["verifier"]["drafter_messages"] == 0);
    const int64_t added = stats["buffer"]["added"].get<int64_t>();
    if (every > 0) {
      // 3 sequences of 40 tokens, one record every 4 tokens: about 30 (prompt records are off;
      // the buffer may set some aside as held out).
      CHECK(added >= 3 * (40 / 4) / 2);
      CHECK(added <= 3 * 40);
    } else {
      CHECK(added == 0);
    }
    rt->shutdown();
  }
}

TEST_CASE(
    "runtime: with a draft that never agrees, the scheduler falls back to plain rounds that never "
    "reach the drafter",
    "[runtime][adaptive]") {
  // An unrelated draft: the sequences' acceptance soon prices speculation below a plain step,
  // and rounds without draft tokens go straight to the target, without a message to the drafter.
  // Greedy output stays the target's; most rounds are plain, with a probe of k = 1 now and then.
  auto [prompts, refs] = greedy_cases(*models().target, 3, 8, 100, 11);
  RuntimeOptions o;
  o.target = models().target;
  o.draft = peaked_model(tiny_config(256, 64, 2), 77);
  o.max_batch = 1;
  o.max_len = 128;
  o.threads = 2;
  o.adaptive_k = true;
  std::string err;
  auto rt = Runtime::create(o, &err);
  REQUIRE(rt != nullptr);
  int wrong = 0;
  for (size_t i = 0; i < prompts.size(); ++i)
    wrong += rt->submit(greedy(prompts[i], 100))->get().tokens != refs[i];
  CHECK(wrong == 0);
  auto stats = nlohmann::json::parse(rt->stats_json());
  auto m = stats["metrics"];
  auto sched = stats["verifier"]["scheduler"];
  INFO(m.dump() << " " << sched.dump());
  const int64_t rounds = m["rounds"], plain = m["plain_rounds"];
  CHECK(plain > rounds / 2);
  CHECK(m["num_draft_tokens"].get<int64_t>() < 300 / 2);
  // One message a drafting round, one to free each request the drafter saw: none for plain rounds.
  const int64_t drafting = sched["rounds"].get<int64_t>() - sched["rounds_all_k0"].get<int64_t>();
  CHECK(stats["verifier"]["drafter_messages"].get<int64_t>() <= drafting + static_cast<int64_t>(prompts.size()));
  CHECK(stats["verifier"]["round_costs"]["batch 1"]["verify_ms_by_k"].size() == 9);
  rt->shutdown();
}

TEST_CASE("runtime: cancel mid-stream, shutdown without finishing, bad input", "[runtime][errors]") {
  auto rt = make_runtime(true);
  SECTION("cancel mid-stream") {
    std::shared_ptr<RequestHandle> h;
    std::atomic<int> chunks{0};
    std::promise<void> first;
    h = rt->submit(greedy({1, 2, 3}, 80), [&](const TokenChunk&) {
      if (chunks++ == 0) first.set_value();
    });
    first.get_future().wait();
    h->cancel();
    auto r = h->get();
    CHECK(r.finish == "cancelled");
    CHECK(r.tokens.size() < 80);
    CHECK(rt->submit(greedy({4, 5}, 5))->get().ok());  // the runtime still serves
  }
  SECTION("each bad input gets its error code; a normal request right after succeeds") {
    auto expect = [&](GenerateParams p, const std::string& code) {
      auto r = rt->submit(std::move(p))->get();
      INFO(r.error_message);
      CHECK(r.finish == "error");
      CHECK(r.error_code == code);
      CHECK(rt->submit(greedy({7, 8}, 3))->get().ok());
    };
    expect(greedy({}, 5), "invalid_request");
    expect(greedy({1, 999}, 5), "invalid_request");
    expect(greedy({1}, 1000000000), "invalid_request");
    expect(greedy(std::vector<int64_t>(200, 1), 5), "prompt_too_long");
    auto bad = greedy({1}, 5);
    bad.temperature = -1;
    expect(bad, "invalid_request");
    bad = greedy({1}, 5);
    bad.top_p = 1.5;
    expect(bad, "invalid_request");
    bad = greedy({1}, 5);
    bad.top_k = -3;
    expect(bad, "invalid_request");
    bad = greedy({1}, 5);
    bad.stop = {""};
    expect(bad, "invalid_request");
  }
  SECTION("duplicate ids in flight are refused") {
    auto a = greedy({1, 2}, 60);
    a.id = "same";
    auto h1 = rt->submit(a);
    auto r2 = rt->submit(a)->get();
    CHECK(r2.error_code == "duplicate_id");
    CHECK(h1->get().ok());
  }
  SECTION("shutdown(false) cancels in-flight work; every request gets one result") {
    std::vector<std::shared_ptr<RequestHandle>> hs;
    for (int i = 0; i < 20; ++i) hs.push_back(rt->submit(greedy({static_cast<int64_t>(i + 1)}, 60)));
    rt->shutdown(false);
    int answered = 0;
    for (auto& h : hs) {
      REQUIRE(h->wait_for(std::chrono::seconds(30)));
      auto r = h->get();
      answered += r.finish == "cancelled" || r.finish == "length";
    }
    CHECK(answered == 20);
    CHECK(rt->submit(greedy({1}, 2))->get().error_code == "shutting_down");
  }
}

TEST_CASE("runtime: a full queue answers busy instead of growing", "[runtime][errors]") {
  auto rt = make_runtime(true, /*max_in_flight=*/2);
  std::vector<std::shared_ptr<RequestHandle>> hs;
  for (int i = 0; i < 12; ++i) hs.push_back(rt->submit(greedy({static_cast<int64_t>(i + 1)}, 40)));
  int busy = 0, ok = 0;
  for (auto& h : hs) {
    auto r = h->get();
    busy += r.error_code == "busy";
    ok += r.ok();
    if (r.error_code == "busy") CHECK(r.error_message.find("retry after") != std::string::npos);
  }
  CHECK(busy > 0);
  CHECK(ok >= 2);
  CHECK(busy + ok == 12);
  CHECK(rt->submit(greedy({3}, 4))->get().ok());
}

TEST_CASE("runtime: bad options are errors as values", "[runtime][errors]") {
  std::string err;
  RuntimeOptions o;
  CHECK(Runtime::create(o, &err) == nullptr);
  CHECK(err.find("target") != std::string::npos);
  o.target = models().target;
  o.max_batch = 0;
  CHECK(Runtime::create(o, &err) == nullptr);
  CHECK(err.find("max_batch") != std::string::npos);
  o.max_batch = 4;
  o.scheduler = "fastest";
  CHECK(Runtime::create(o, &err) == nullptr);
  CHECK(err.find("scheduler") != std::string::npos);
  o.scheduler = "stealing";  // CAF's default policy still works
  auto rt = Runtime::create(o, &err);
  REQUIRE(rt);
  GenerateParams p;
  p.prompt_tokens = {1, 2, 3};
  p.max_new_tokens = 4;
  CHECK(rt->submit(p)->get().ok());
  rt->shutdown();
}

TEST_CASE("runtime: a drafter that throws mid-run is restarted, a failing round is recovered, all requests complete correctly",
          "[runtime][supervision]") {
  for (auto [name, drafter_fail, verifier_fail] :
       {std::tuple{"drafter throws", int64_t{5}, int64_t{-1}}, {"verifier round throws", int64_t{-1}, int64_t{7}},
        {"both", int64_t{3}, int64_t{11}}}) {
    DYNAMIC_SECTION(name) {
      RuntimeOptions o;
      o.target = models().target;
      o.draft = models().draft;
      o.max_batch = 8;
      o.max_len = 96;
      o.threads = 2;
      o.inject_drafter_failure = drafter_fail;
      o.inject_verifier_failure = verifier_fail;
      // Every round drafts (adaptive k would price this draft, as large as its target, out of
      // most rounds, and rounds without draft tokens never reach the drafter to fail).
      o.adaptive_k = false;
      o.k = 3;
      std::string err;
      auto rt = Runtime::create(o, &err);
      REQUIRE(rt);
      auto [prompts, refs] = greedy_cases(*models().target, 24, 8, 12, 77);
      std::vector<std::shared_ptr<RequestHandle>> hs;
      for (auto& p : prompts) hs.push_back(rt->submit(greedy(p, 12)));
      int wrong = 0, not_ok = 0;
      for (size_t i = 0; i < hs.size(); ++i) {
        auto r = hs[i]->get();
        not_ok += !r.ok();
        wrong += r.tokens != refs[i];
      }
      CHECK(not_ok == 0);
      CHECK(wrong == 0);
      auto stats = nlohmann::json::parse(rt->stats_json());
      if (drafter_fail > 0) CHECK(stats["verifier"]["drafter_restarts"] == 1);
      if (verifier_fail > 0) CHECK(stats["verifier"]["round_recoveries"] == 1);
      CHECK(stats["metrics"]["requests_finished"]["length"] == 24);
      rt->shutdown();
    }
  }
}

TEST_CASE("runtime: a checkpoint folder's tokenizer streams text, and stop strings see real text", "[runtime][tokenizer]") {
  // A random model whose vocabulary is the checked-in SentencePiece model's (3,000 pieces),
  // saved as an HF folder with tokenizer.model beside it: osd.tokenizer=auto finds it.
  auto cfg = tiny_config(3000, 64, 2);
  auto target = std::make_shared<Transformer>(cfg, 5);
  const auto dir = files::temp_dir() + "/osd-rt-tok-" + std::to_string(::getpid());
  save_hf_checkpoint(dir, *target);
  const auto spm = files::read_all(std::string(OSD_SOURCE_DIR) + "/tests/data/tokenizers/sentencepiece-bpe.model");
  std::ofstream(dir + "/tokenizer.model", std::ios::binary) << spm;
  const auto tok = serve_tokenizer("auto", dir, *target);
  REQUIRE(tok);
  CHECK(tok->vocab_size() == 3000);
  CHECK_THROWS_WITH(serve_tokenizer("auto", dir, Transformer(tiny_config(256, 64, 2), 1)), Catch::Contains("more than the target"));
  CHECK(serve_tokenizer("none", dir, *target) == nullptr);

  RuntimeOptions o;
  o.target = target;
  o.max_batch = 4;
  o.max_len = 96;
  o.threads = 2;
  o.tokenizer = tok;
  std::string err;
  auto rt = Runtime::create(o, &err);
  REQUIRE(rt);
  const auto prompt = tok->encode_prompt("The runtime streams text per token");
  std::string streamed;
  std::vector<int64_t> tokens;
  auto h = rt->submit(greedy(prompt, 40), [&](const TokenChunk& c) {
    CHECK(text::is_valid_utf8(c.text));
    streamed += c.text;
    tokens.insert(tokens.end(), c.tokens.begin(), c.tokens.end());
  });
  const auto r = h->get();
  REQUIRE(r.tokens.size() == 40);
  CHECK(tokens == r.tokens);
  auto all = prompt;
  all.insert(all.end(), r.tokens.begin(), r.tokens.end());
  const std::string before = tok->decode(prompt, true), full = tok->decode(all, true);
  REQUIRE(full.compare(0, before.size(), before) == 0);
  const std::string expected = full.substr(before.size());
  // Streamed text is what decoding everything adds to the prompt (an unfinished character at
  // the very end is held back, never sent half).
  CHECK(expected.compare(0, streamed.size(), streamed) == 0);
  CHECK(expected.size() - streamed.size() <= 3 * 4);
  CHECK(r.text == streamed);
  // A stop string taken from the streamed text ends generation there.
  if (streamed.size() > 6) {
    const std::string stop = streamed.substr(streamed.size() / 2, 3);
    auto p = greedy(prompt, 40);
    p.stop = {stop};
    const auto s = rt->submit(p)->get();
    CHECK(s.finish == "stop");
    CHECK(s.text == streamed.substr(0, streamed.find(stop)));
  }
  rt->shutdown(true);
  files::remove_tree(dir);
}

TEST_CASE("runtime: rounds that mix k = 0 and k > 0 rows, and rows that switch back and forth, "
          "keep greedy output the target's",
          "[runtime][scheduler]") {
  // The schedule is forced (k_override): in every round some rows draft and some do not, and each
  // row alternates between drafting 0, 1..4 tokens, so every row's draft cache falls behind and
  // catches up again many times (DraftSync) while the target verifies ragged batches.
  auto [prompts, refs] = greedy_cases(*models().target, 24, 10, 24, 7);
  RuntimeOptions o;
  o.target = models().target;
  o.draft = models().draft;
  o.max_batch = 8;
  o.max_len = 96;
  o.threads = 2;
  o.prefill_chunk = 4;  // prompts of up to 10 tokens span rounds
  o.k_override = [](int64_t seq, int64_t round, int64_t) { return (seq + round) % 5 == 0 ? 0 : (seq + round) % 5; };
  std::string err;
  auto rt = Runtime::create(o, &err);
  REQUIRE(rt != nullptr);
  std::vector<std::shared_ptr<RequestHandle>> handles;
  for (const auto& p : prompts) handles.push_back(rt->submit(greedy(p, 24)));
  int wrong = 0;
  for (size_t i = 0; i < prompts.size(); ++i) wrong += handles[i]->get().tokens != refs[i];
  CHECK(wrong == 0);
  auto stats = nlohmann::json::parse(rt->stats_json());
  auto k_rows = stats["verifier"]["scheduler"]["k_rows"];
  INFO(stats["verifier"].dump());
  CHECK(k_rows[0].get<int64_t>() > 0);
  CHECK(k_rows[4].get<int64_t>() > 0);
  CHECK(stats["metrics"]["num_accepted_tokens"].get<int64_t>() > 0);
  rt->shutdown();
}

TEST_CASE("runtime: a seed gives the same sampled text whatever k the scheduler picks and "
          "whatever shares the batch (coupled sampling), which the p/q rule does not promise",
          "[runtime][scheduler][seed]") {
  // Target-only sampling of each (prompt, seed) is the reference. Under load with a forced,
  // changing k schedule, coupled speculative sampling gives exactly that text; rejection sampling
  // gives target-distributed text that differs (the control: the property is not vacuous).
  auto [prompts, refs] = greedy_cases(*models().target, 12, 8, 1, 9);
  using Schedule = std::function<int64_t(int64_t, int64_t, int64_t)>;
  const Schedule changing = [](int64_t seq, int64_t round, int64_t) { return (seq * 3 + round) % 4; };
  const Schedule per_sequence = [](int64_t seq, int64_t, int64_t) { return seq % 4; };
  auto run = [&](bool draft, SpecSampling mode, bool load, Schedule schedule = {}) {
    RuntimeOptions o;
    o.target = models().target;
    o.draft = draft ? models().draft : nullptr;
    o.max_batch = 8;
    o.max_len = 96;
    o.threads = 2;
    o.sampling = mode;
    o.k_override = schedule;
    std::string err;
    auto rt = Runtime::create(o, &err);
    REQUIRE(rt != nullptr);
    std::vector<std::shared_ptr<RequestHandle>> hs;
    for (size_t i = 0; i < prompts.size(); ++i) {
      GenerateParams p;
      p.prompt_tokens = prompts[i];
      p.max_new_tokens = 30;
      p.temperature = 1.0;
      p.seed = 1000 + i;
      hs.push_back(rt->submit(p));
      if (!load) hs.back()->get();  // one at a time: nothing shares its batch
    }
    std::vector<std::vector<int64_t>> out;
    for (auto& h : hs) out.push_back(h->get().tokens);
    rt->shutdown();
    return out;
  };
  const auto alone = run(false, SpecSampling::coupled, false);
  CHECK(run(true, SpecSampling::coupled, true, changing) == alone);
  CHECK(run(true, SpecSampling::coupled, false, per_sequence) == alone);
  CHECK(run(true, SpecSampling::coupled, false) == alone);  // the planner's own choices
  const auto rejection = run(true, SpecSampling::rejection, true, changing);
  int differ = 0;
  for (size_t i = 0; i < alone.size(); ++i) differ += rejection[i] != alone[i];
  CHECK(differ > 0);
  // The p/q rule with each sequence's k fixed: the same text alone and in a shared batch, since
  // its randomness is keyed by seed and position, not by the batch.
  CHECK(run(true, SpecSampling::rejection, true, per_sequence) ==
        run(true, SpecSampling::rejection, false, per_sequence));
}
