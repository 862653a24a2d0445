#include "runtime/cli/bench_stats.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace osd::bench {

double predicted_speedup(double alpha, double k, double c) {
  const double tokens = alpha >= 1.0 ? k + 1.0 : (1.0 - std::pow(alpha, k + 1.0)) / (1.0 - alpha);
  return tokens / (k * c + 1.0);
}

nlohmann::json speedup_json(double alpha, double k, double c, double measured) {
  const double predicted = predicted_speedup(alpha, k, c);
  return {{"alpha", alpha},
          {"k", k},
          {"c", c},
          {"predicted_speedup", predicted},
          {"measured_speedup", measured},
          {"efficiency", predicted > 0 ? nlohmann::json(measured / predicted) : nlohmann::json()}};
}

double median_of(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

nlohmann::json spread(const std::vector<double>& per_repeat) {
  std::vector<double> v;
  for (double x : per_repeat)
    if (std::isfinite(x)) v.push_back(x);
  if (v.empty()) return nullptr;
  return {{"median", median_of(v)},
          {"min", *std::min_element(v.begin(), v.end())},
          {"max", *std::max_element(v.begin(), v.end())},
          {"per_repeat", per_repeat}};
}

double t975(size_t df) {
  // Two-sided 95% quantiles of Student's t, df = 1..30; beyond, the normal's 1.96 (t(30) = 2.042).
  static const double table[] = {12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306,
                                 2.262,  2.228, 2.201, 2.179, 2.160, 2.145, 2.131, 2.120,
                                 2.110,  2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064,
                                 2.060,  2.056, 2.052, 2.048, 2.045, 2.042};
  if (df == 0) return INFINITY;
  return df <= 30 ? table[df - 1] : 1.96;
}

Interval interval95(const std::vector<double>& values) {
  Interval s;
  s.n = values.size();
  if (values.empty()) return s;
  for (double x : values) s.mean += x / static_cast<double>(s.n);
  s.median = median_of(values);
  s.min = *std::min_element(values.begin(), values.end());
  s.max = *std::max_element(values.begin(), values.end());
  if (s.n > 1) {
    double ss = 0;
    for (double x : values) ss += (x - s.mean) * (x - s.mean);
    s.stderr_ = std::sqrt(ss / static_cast<double>(s.n - 1) / static_cast<double>(s.n));
  }
  const double half = s.n > 1 ? t975(s.n - 1) * s.stderr_ : INFINITY;
  s.low = s.mean - half;
  s.high = s.mean + half;
  return s;
}

nlohmann::json interval_json(const std::vector<double>& values) {
  const auto s = interval95(values);
  auto finite = [](double x) { return std::isfinite(x) ? nlohmann::json(x) : nlohmann::json(); };
  return {{"mean", s.mean},
          {"median", s.median},
          {"stderr", s.stderr_},
          {"ci95", {finite(s.low), finite(s.high)}},
          {"min", s.min},
          {"max", s.max},
          {"pairs", s.n},
          {"per_pair", values},
          // The 95% interval excludes a 5% difference: the repeats tell this cost apart from 5%
          // (above or below). false: with these repeats, a 5% cost cannot be ruled in or out.
          {"resolved_at_5pct", s.excludes(0.05)}};
}

std::string prompt_hash(const std::vector<int64_t>& tokens) {
  uint64_t h = 1469598103934665603ull;  // FNV-1a 64 offset basis
  for (int64_t t : tokens) {
    const auto u = static_cast<uint64_t>(t);
    for (int b = 0; b < 8; ++b) {
      h ^= (u >> (8 * b)) & 0xff;
      h *= 1099511628211ull;  // FNV prime
    }
  }
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
  return buf;
}

SchedulerCounts SchedulerCounts::from_stats(const nlohmann::json& stats) {
  SchedulerCounts s;
  const nlohmann::json* j = nullptr;
  if (stats.contains("verifier") && stats["verifier"].is_object() &&
      stats["verifier"].contains("scheduler"))
    j = &stats["verifier"]["scheduler"];
  else if (stats.contains("scheduler"))
    j = &stats["scheduler"];
  if (!j || !j->is_object() || !j->contains("k_rows")) return s;
  s.known = true;
  for (const auto& x : (*j)["k_rows"]) s.k_rows.push_back(x.get<double>());
  s.rounds = j->value("rounds", 0.0);
  s.rounds_all_k0 = j->value("rounds_all_k0", 0.0);
  return s;
}

SchedulerCounts SchedulerCounts::since(const SchedulerCounts& before) const {
  if (!known || !before.known) return *this;
  SchedulerCounts d = *this;
  for (size_t i = 0; i < d.k_rows.size() && i < before.k_rows.size(); ++i)
    d.k_rows[i] -= before.k_rows[i];
  d.rounds -= before.rounds;
  d.rounds_all_k0 -= before.rounds_all_k0;
  return d;
}

SchedulerCounts SchedulerCounts::plus(const SchedulerCounts& other) const {
  if (!known || !other.known) return known ? *this : other;
  SchedulerCounts d = *this;
  if (d.k_rows.size() < other.k_rows.size()) d.k_rows.resize(other.k_rows.size(), 0.0);
  for (size_t i = 0; i < other.k_rows.size(); ++i) d.k_rows[i] += other.k_rows[i];
  d.rounds += other.rounds;
  d.rounds_all_k0 += other.rounds_all_k0;
  return d;
}

nlohmann::json SchedulerCounts::to_json() const {
  if (!known)
    return {{"k_distribution", nullptr},
            {"k0_round_share", nullptr},
            {"scheduler", "not reported by this runtime"}};
  double rows = 0;
  for (double x : k_rows) rows += x;
  nlohmann::json dist = nlohmann::json::array();
  for (double x : k_rows) dist.push_back(rows > 0 ? x / rows : 0.0);
  return {{"k_distribution", dist},
          {"k0_round_share", rounds > 0 ? nlohmann::json(rounds_all_k0 / rounds) : nullptr},
          {"rounds", rounds}};
}

}  // namespace osd::bench
