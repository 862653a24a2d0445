#pragma once
// A cumulative histogram with fixed bucket bounds, as Prometheus exposes one: for each upper
// bound `le`, how many observations were <= le; plus their sum and count (the +Inf bucket).
// Plain data; the metrics actor fills it, the stats JSON carries it (to_json), and the
// Prometheus text is written from that JSON.
#include <nlohmann/json.hpp>

#include <cstdint>
#include <vector>

namespace osd {

class Histogram {
 public:
  // `bounds`: strictly increasing upper bounds (the +Inf bucket is implicit).
  explicit Histogram(std::vector<double> bounds = {});

  void observe(double value, int64_t times = 1);
  const std::vector<double>& bounds() const { return bounds_; }
  // counts()[i]: observations <= bounds()[i] (cumulative).
  std::vector<int64_t> counts() const;
  double sum() const { return sum_; }
  int64_t count() const { return count_; }

  // {"le": [bounds], "counts": [cumulative counts], "sum": s, "count": n}
  nlohmann::json to_json() const;

  // Bucket bounds that serving dashboards expect (seconds, tokens).
  static std::vector<double> latency_seconds();      // 1 ms .. 160 s
  static std::vector<double> token_latency_seconds();  // 0.5 ms .. 10 s, per output token
  static std::vector<double> token_counts();           // 1 .. 65536, powers of two
  static std::vector<double> acceptance_lengths();     // 0 .. 8, then 16, 32, 64

 private:
  std::vector<double> bounds_;
  std::vector<int64_t> bucket_;  // per bucket, not cumulative; last: above every bound
  double sum_ = 0;
  int64_t count_ = 0;
};

}  // namespace osd
