// The Prometheus text: values equal the stats JSON they come from (the acceptance gauge once
// read 0 where the stats said 84 of 121), per-route metrics are labelled by route name, label
// values are escaped, every family is declared once, histograms are cumulative.
#include <catch2/catch.hpp>

#include <cmath>

#include "models/common/histogram.hpp"
#include "runtime/prometheus.hpp"
#include "tests/http/prometheus_parse.hpp"

namespace osd::test {

namespace {

using json = nlohmann::json;

// A stats JSON as Runtime::stats_json shapes it: one route "default" with 84 of 121 draft tokens
// accepted, a second route whose name needs escaping.
json sample_stats(const std::string& odd_route) {
  Histogram ttft(Histogram::latency_seconds());
  ttft.observe(0.004);
  ttft.observe(0.3);
  ttft.observe(1000);  // beyond every bound: only in +Inf
  Histogram lengths(Histogram::acceptance_lengths());
  lengths.observe(0, 3);
  lengths.observe(4, 2);
  json routes = {
      {"default",
       {{"requests", 3}, {"acceptance_rate", 84.0 / 121.0}, {"num_drafts", 40}, {"num_draft_tokens", 121},
        {"num_accepted_tokens", 84}, {"recent_acceptance_rate", 0.5}, {"recent_requests", 3},
        {"draft_version", 2},
        {"distill", {{"published", 2}, {"rejected", 5}, {"held", 4}, {"rolled_back", 1}, {"deferred", 0},
                     {"discarded", 0}, {"other", 0}}},
        {"acceptance_length_by_version", {{"2", lengths.to_json()}}}}},
      {odd_route,
       {{"requests", 1}, {"acceptance_rate", 0.25}, {"num_drafts", 1}, {"num_draft_tokens", 4},
        {"num_accepted_tokens", 1}, {"recent_acceptance_rate", 0.25}, {"recent_requests", 1},
        {"draft_version", 0}, {"distill", json::object()}, {"acceptance_length_by_version", json::object()}}}};
  return {{"metrics",
           {{"num_drafts", 41}, {"num_draft_tokens", 125}, {"num_accepted_tokens", 85},
            {"acceptance_rate", 85.0 / 125.0}, {"accepted_per_position", {30, 25, 20, 10}},
            {"requests_finished", {{"length", 3}, {"cancelled", 1}}}, {"mean_batch_size", 1.75},
            {"tokens_per_second", 12.5}, {"routes", routes},
            {"histograms", {{"time_to_first_token_seconds", ttft.to_json()}}}}},
          {"intake", {{"in_flight", 2}, {"refused", {{"busy", 7}}}}},
          {"verifier", {{"waiting", 1}, {"verifier_idle_fraction", 0.375}, {"drafter_restarts", 0}}}};
}

}  // namespace

TEST_CASE("prometheus: gauges equal the stats JSON, labelled by route name", "[prometheus]") {
  const std::string odd = "py\"th\\on\nx";
  const auto stats = sample_stats(odd);
  const std::string text = prometheus_text(stats);
  INFO(text);
  const auto page = parse_prometheus(text);
  // The acceptance gauge: 84 / 121, not 0, and by name, not by index.
  CHECK(page.value("osd_acceptance_rate", {{"route", "default"}}) == stats["metrics"]["routes"]["default"]["acceptance_rate"].get<double>());
  CHECK(page.value("osd_acceptance_rate", {{"route", "default"}}) == Approx(84.0 / 121.0));
  CHECK(text.find("draft=\"0\"") == std::string::npos);
  CHECK(page.value("osd_num_draft_tokens_total", {{"route", "default"}}) == 121);
  CHECK(page.value("osd_num_accepted_tokens_total", {{"route", "default"}}) == 84);
  CHECK(page.value("osd_recent_acceptance_rate", {{"route", "default"}}) == 0.5);
  CHECK(page.value("osd_draft_version", {{"route", "default"}}) == 2);
  // The escaped route name reads back as itself.
  CHECK(page.value("osd_acceptance_rate", {{"route", odd}}) == 0.25);
  CHECK(text.find("route=\"py\\\"th\\\\on\\nx\"") != std::string::npos);
  // Fractional gauges are not truncated to integers.
  CHECK(page.value("osd_mean_batch_size") == 1.75);
  CHECK(page.value("osd_tokens_per_second") == 12.5);
  CHECK(page.value("osd_verifier_idle_fraction") == 0.375);
  CHECK(page.value("osd_requests_in_flight") == 2);
  CHECK(page.value("osd_requests_refused_total", {{"code", "busy"}}) == 7);
  CHECK(page.value("osd_requests_finished_total", {{"reason", "cancelled"}}) == 1);
  // Distiller decisions.
  CHECK(page.value("osd_draft_publishes_total", {{"route", "default"}}) == 2);
  CHECK(page.value("osd_draft_rejections_total", {{"route", "default"}}) == 5);
  CHECK(page.value("osd_draft_rollbacks_total", {{"route", "default"}}) == 1);
  CHECK(page.value("osd_distill_updates_total", {{"route", "default"}, {"decision", "held"}}) == 4);
  CHECK(page.types.at("osd_draft_publishes_total") == "counter");
  CHECK(page.types.at("osd_acceptance_rate") == "gauge");
}

TEST_CASE("prometheus: histograms are cumulative with +Inf, _sum and _count", "[prometheus]") {
  const auto page = parse_prometheus(prometheus_text(sample_stats("c")));
  CHECK(page.types.at("osd_time_to_first_token_seconds") == "histogram");
  const auto buckets = page.all("osd_time_to_first_token_seconds_bucket");
  REQUIRE(buckets.size() == Histogram::latency_seconds().size() + 1);
  double previous = 0;
  for (const auto& b : buckets) {
    CHECK(b.value >= previous);
    previous = b.value;
  }
  CHECK(page.value("osd_time_to_first_token_seconds_bucket", {{"le", "0.005"}}) == 1);
  CHECK(page.value("osd_time_to_first_token_seconds_bucket", {{"le", "0.3"}}) == 2);
  CHECK(page.value("osd_time_to_first_token_seconds_bucket", {{"le", "160"}}) == 2);
  CHECK(page.value("osd_time_to_first_token_seconds_bucket", {{"le", "+Inf"}}) == 3);
  CHECK(page.value("osd_time_to_first_token_seconds_count") == 3);
  CHECK(page.value("osd_time_to_first_token_seconds_sum") == Approx(1000.304));
  // Acceptance length per route and draft version: 3 rounds accepted 0, 2 accepted 4.
  const std::map<std::string, std::string> at4{{"route", "default"}, {"draft_version", "2"}, {"le", "4"}};
  CHECK(page.value("osd_acceptance_length_bucket", at4) == 5);
  CHECK(page.value("osd_acceptance_length_bucket", {{"route", "default"}, {"draft_version", "2"}, {"le", "3"}}) == 3);
  CHECK(page.value("osd_acceptance_length_sum", {{"route", "default"}, {"draft_version", "2"}}) == 8);
  // Histograms the stats do not carry are left out, not shown as zeros.
  CHECK_FALSE(page.types.count("osd_request_queue_time_seconds"));
}

TEST_CASE("prometheus: an empty or partial stats object still gives valid text", "[prometheus]") {
  // An actor that did not answer shows as null in the stats.
  const json partial = {{"metrics", nullptr}, {"intake", {{"in_flight", 3}}}, {"verifier", nullptr}};
  const auto page = parse_prometheus(prometheus_text(partial));
  CHECK(page.value("osd_requests_in_flight") == 3);
  CHECK(page.value("osd_verifier_waiting") == 0);
  CHECK_NOTHROW(parse_prometheus(prometheus_text(json::object())));
}

TEST_CASE("prometheus: label and value formatting", "[prometheus]") {
  CHECK(PrometheusWriter::escape_label_value("a\"b\\c\nd") == "a\\\"b\\\\c\\nd");
  CHECK(PrometheusWriter::format_value(3) == "3");
  CHECK(PrometheusWriter::format_value(0.1) == "0.1");
  CHECK(PrometheusWriter::format_value(84.0 / 121.0) == "0.6942148760330579");
  CHECK(std::strtod(PrometheusWriter::format_value(84.0 / 121.0).c_str(), nullptr) == 84.0 / 121.0);
  CHECK(PrometheusWriter::format_value(std::nan("")) == "NaN");
  CHECK(PrometheusWriter::format_value(-1.0 / 0.0) == "-Inf");
}

TEST_CASE("histogram: buckets are 'less than or equal', counts cumulative", "[prometheus]") {
  Histogram h({1, 2, 4});
  h.observe(1);     // le 1
  h.observe(1.5);   // le 2
  h.observe(4, 3);  // le 4, three times
  h.observe(9);     // +Inf only
  CHECK(h.counts() == std::vector<int64_t>{1, 2, 5});
  CHECK(h.count() == 6);
  CHECK(h.sum() == Approx(1 + 1.5 + 12 + 9));
  h.observe(3, 0);  // no observation
  CHECK(h.count() == 6);
}

}  // namespace osd::test
