// The metrics actor: per-route acceptance under the route's name, a recent window that shows a
// drift, acceptance lengths per round recovered exactly from a request's per-position counts and
// keyed by the draft version serving the route, distiller decisions counted per route, latency
// histograms in seconds.
#include "tests/test_common.hpp"

#include "actors/messages.hpp"
#include "actors/metrics.hpp"

#include <nlohmann/json.hpp>

using namespace osd;
using json = nlohmann::json;

namespace {

// A request's stats from its rounds: each round is (k, accepted).
DoneEvent done(const std::string& route, const std::vector<std::pair<int64_t, int64_t>>& rounds,
               int64_t tokens = 4) {
  DoneEvent d;
  d.id = "r";
  d.finish = "length";
  d.route = route;
  d.tokens.assign(static_cast<size_t>(tokens), 1);
  d.ttft_ms = 20;
  d.total_ms = 50;
  for (auto [k, a] : rounds) {
    Verdict v;
    v.k = k;
    v.accepted = a;
    d.stats.record(v);
  }
  return d;
}

struct MetricsActor {
  caf::actor_system_config cfg;
  caf::actor_system sys{cfg};
  caf::actor metrics = spawn_metrics(sys);
  caf::scoped_actor self{sys};
  template <class... Ts>
  void send(Ts&&... xs) {
    self->send(metrics, std::forward<Ts>(xs)...);
  }
  json stats() {
    json out;
    self->request(metrics, caf::infinite, stats_atom_v)
        .receive([&](const std::string& s) { out = json::parse(s); }, [&](caf::error& e) { FAIL(caf::to_string(e)); });
    return out;
  }
  ~MetricsActor() { self->send_exit(metrics, caf::exit_reason::user_shutdown); }
};

}  // namespace

TEST_CASE("metrics: acceptance by route name, lengths per round by draft version", "[metrics]") {
  MetricsActor m;
  m.send(route_atom_v, std::vector<std::string>{"python", "c"}, std::vector<int64_t>{3, 0});
  // Rounds (k, accepted): lengths 4, 0, 2, 4.
  m.send(done("python", {{4, 4}, {4, 0}, {3, 2}, {4, 4}}));
  auto s = m.stats();
  const auto& py = s["routes"]["python"];
  CHECK(py["num_draft_tokens"] == 15);
  CHECK(py["num_accepted_tokens"] == 10);
  CHECK(py["acceptance_rate"].get<double>() == Approx(10.0 / 15.0));
  CHECK(py["draft_version"] == 3);  // restored at start
  CHECK(s["routes"]["c"]["requests"] == 0);  // known before its first request
  const auto& h = py["acceptance_length_by_version"]["3"];
  const auto le = h["le"].get<std::vector<double>>();
  const auto counts = h["counts"].get<std::vector<int64_t>>();
  auto at = [&](double bound) { return counts[std::find(le.begin(), le.end(), bound) - le.begin()]; };
  CHECK(at(0) == 1);
  CHECK(at(1) == 1);
  CHECK(at(2) == 2);
  CHECK(at(3) == 2);
  CHECK(at(4) == 4);
  CHECK(h["count"] == 4);
  CHECK(h["sum"] == 10);
  // A publish moves the route to its new version; later requests are counted there.
  DistillMetrics pub;
  pub.route = 0;
  pub.version = 4;
  pub.published = true;
  pub.decision = "published";
  m.send(pub);
  DistillMetrics rolled = pub;
  rolled.published = false;
  rolled.decision = "rejected by guard";
  m.send(rolled);
  DistillMetrics held = rolled;
  held.decision = "held";
  m.send(held);
  m.send(done("python", {{2, 1}}));
  s = m.stats();
  CHECK(s["routes"]["python"]["draft_version"] == 4);
  CHECK(s["routes"]["python"]["acceptance_length_by_version"]["4"]["count"] == 1);
  CHECK(s["routes"]["python"]["acceptance_length_by_version"]["3"]["count"] == 4);
  const auto& d = s["routes"]["python"]["distill"];
  CHECK(d["published"] == 1);
  CHECK(d["rolled_back"] == 1);
  CHECK(d["held"] == 1);
  CHECK(d["rejected"] == 2);
  CHECK(s["routes"]["c"]["distill"]["published"] == 0);
}

TEST_CASE("metrics: the recent window shows a drift the cumulative rate hides", "[metrics]") {
  MetricsActor m;
  m.send(route_atom_v, std::vector<std::string>{"default"}, std::vector<int64_t>{0});
  for (int i = 0; i < 300; ++i) m.send(done("default", {{4, 4}}));  // all accepted
  for (int i = 0; i < kRecentRequests; ++i) m.send(done("default", {{4, 1}}));  // then a quarter
  const auto s = m.stats()["routes"]["default"];
  CHECK(s["recent_requests"] == kRecentRequests);
  CHECK(s["recent_acceptance_rate"].get<double>() == Approx(0.25));
  CHECK(s["acceptance_rate"].get<double>() > 0.75);
}

TEST_CASE("metrics: latency and length histograms in seconds and tokens", "[metrics]") {
  MetricsActor m;
  m.send(done("default", {{4, 2}}, 11));  // ttft 20 ms, total 50 ms, 11 tokens: 3 ms per output token
  DoneEvent refused;
  refused.id = "x";
  refused.finish = "error";
  refused.error_code = "busy";
  m.send(refused);
  const auto h = m.stats()["histograms"];
  CHECK(h["time_to_first_token_seconds"]["count"] == 1);
  CHECK(h["time_to_first_token_seconds"]["sum"].get<double>() == Approx(0.020));
  CHECK(h["e2e_request_latency_seconds"]["sum"].get<double>() == Approx(0.050));
  CHECK(h["time_per_output_token_seconds"]["sum"].get<double>() == Approx(0.003));
  CHECK(h["request_generation_tokens"]["sum"] == 11);
  // Not reported by the verifier (DoneEvent::prompt_tokens, queue_ms unset): left out.
  CHECK_FALSE(h.contains("request_prompt_tokens"));
  CHECK_FALSE(h.contains("request_queue_time_seconds"));
  DoneEvent reported = done("default", {}, 2);
  reported.prompt_tokens = 9;
  reported.queue_ms = 7;
  m.send(reported);
  const auto h2 = m.stats()["histograms"];
  CHECK(h2["request_prompt_tokens"]["sum"] == 9);
  CHECK(h2["request_queue_time_seconds"]["sum"].get<double>() == Approx(0.007));
}
