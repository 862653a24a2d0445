// A runtime that stays up: requests the model cannot hold are refused at admission, a cancel
// never reaches a later request that reuses an id, dead actors are restarted or reported, and
// draining answers every request once.
#include "tests/test_common.hpp"

#include <atomic>
#include <chrono>
#include <future>
#include <nlohmann/json.hpp>
#include <thread>

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

RuntimeOptions base_options(int64_t max_len = 64) {
  RuntimeOptions o;
  o.target = models().target;
  o.draft = models().draft;
  o.max_batch = 4;
  o.max_len = max_len;
  o.threads = 2;
  o.token_text = [](int64_t t) { return std::string(1, static_cast<char>(t)); };
  return o;
}

GenerateParams greedy(std::vector<int64_t> prompt, int64_t n, std::string id = "") {
  GenerateParams p;
  p.id = std::move(id);
  p.prompt_tokens = std::move(prompt);
  p.max_new_tokens = n;
  p.temperature = 0;
  return p;
}

// The result, or a result with finish "timeout" when none comes within a minute (a hung
// runtime fails the test instead of hanging it).
GenerateResult result_of(const std::shared_ptr<RequestHandle>& h) {
  if (!h->wait_for(std::chrono::seconds(60))) {
    GenerateResult r;
    r.finish = "timeout";
    return r;
  }
  return h->get();
}

}  // namespace

TEST_CASE("reliability: a prompt plus max_new_tokens beyond the context is refused at admission",
          "[reliability][admission]") {
  std::string err;
  auto rt = Runtime::create(base_options(64), &err);
  REQUIRE(rt);
  // 40 + 40 > 64: refused with both numbers and the fix, before any shared actor sees it.
  auto r = result_of(rt->submit(greedy(std::vector<int64_t>(40, 7), 40)));
  INFO(r.finish << " " << r.error_code << ": " << r.error_message);
  CHECK(r.finish == "error");
  CHECK(r.error_code == "context_length_exceeded");
  CHECK(r.error_message.find("40") != std::string::npos);
  CHECK(r.error_message.find("64") != std::string::npos);
  CHECK(r.error_message.find("max_new_tokens") != std::string::npos);
  // Several at once, mixed with requests that fit: the fitting ones are served, the rest refused.
  std::vector<std::shared_ptr<RequestHandle>> hs;
  for (int i = 0; i < 6; ++i)
    hs.push_back(rt->submit(i % 2 ? greedy(std::vector<int64_t>(30, 3 + i), 60)
                                  : greedy({1, 2, static_cast<int64_t>(i)}, 20)));
  for (int i = 0; i < 6; ++i) {
    auto ri = result_of(hs[i]);
    INFO(i << ": " << ri.finish << " " << ri.error_code << " " << ri.error_message);
    if (i % 2) CHECK(ri.error_code == "context_length_exceeded");
    else CHECK(ri.finish == "length");
  }
  // Exactly at the context is fine: 24 + 40 = 64.
  auto edge = result_of(rt->submit(greedy(std::vector<int64_t>(24, 9), 40)));
  INFO(edge.error_message);
  CHECK(edge.finish == "length");
  CHECK(edge.tokens.size() == 40);
  // The runtime still serves.
  CHECK(result_of(rt->submit(greedy({5, 6}, 8))).finish == "length");
  rt->shutdown();
}

TEST_CASE("reliability: a cancel of a refused request never cancels a later request reusing its id",
          "[reliability][cancel]") {
  std::string err;
  auto rt = Runtime::create(base_options(64), &err);
  REQUIRE(rt);
  // The first "x" is refused at intake; the cancel races the refusal.
  auto bad = greedy({1, 2}, 8, "x");
  bad.top_p = 2.0;
  auto h = rt->submit(bad);
  rt->cancel("x");
  auto refused = result_of(h);
  CHECK(refused.error_code == "invalid_request");
  // A later request with the same id runs to its end.
  auto again = result_of(rt->submit(greedy({1, 2}, 8, "x")));
  INFO(again.finish << " " << again.error_code);
  CHECK(again.finish == "length");
  CHECK(again.tokens.size() == 8);
  // A cancel of an id that never existed, or of a finished one, changes nothing either.
  rt->cancel("nobody");
  rt->cancel("x");
  auto third = result_of(rt->submit(greedy({3, 4}, 8, "x")));
  CHECK(third.finish == "length");
  rt->shutdown();
}
