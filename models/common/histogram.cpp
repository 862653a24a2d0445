#include "models/common/histogram.hpp"

#include <algorithm>

namespace osd {

Histogram::Histogram(std::vector<double> bounds)
    : bounds_(std::move(bounds)), bucket_(bounds_.size() + 1, 0) {}

void Histogram::observe(double value, int64_t times) {
  if (times <= 0) return;
  // The first bound >= value (Prometheus buckets are "less than or equal").
  const auto it = std::lower_bound(bounds_.begin(), bounds_.end(), value);
  bucket_[static_cast<size_t>(it - bounds_.begin())] += times;
  sum_ += value * static_cast<double>(times);
  count_ += times;
}

std::vector<int64_t> Histogram::counts() const {
  std::vector<int64_t> out(bounds_.size());
  int64_t running = 0;
  for (size_t i = 0; i < bounds_.size(); ++i) out[i] = running += bucket_[i];
  return out;
}

nlohmann::json Histogram::to_json() const {
  return {{"le", bounds_}, {"counts", counts()}, {"sum", sum_}, {"count", count_}};
}

std::vector<double> Histogram::latency_seconds() {
  return {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75,
          1.0,   1.5,    2.0,   2.5,  5.0,   7.5,  10.0,  20.0, 40.0, 80.0, 160.0};
}

std::vector<double> Histogram::token_latency_seconds() {
  return {0.0005, 0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.025, 0.03, 0.04, 0.05,
          0.075,  0.1,   0.15,   0.2,   0.3,    0.4,  0.5,   0.75, 1.0,   2.5,  5.0,  10.0};
}

std::vector<double> Histogram::token_counts() {
  std::vector<double> b;
  for (double x = 1; x <= 65536; x *= 2) b.push_back(x);
  return b;
}

std::vector<double> Histogram::acceptance_lengths() {
  return {0, 1, 2, 3, 4, 5, 6, 7, 8, 16, 32, 64};
}

}  // namespace osd
