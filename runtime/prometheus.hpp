#pragma once
// Prometheus text exposition (format 0.0.4) of the runtime's stats JSON (Runtime::stats_json).
// Every value is read from that JSON, so a scrape and a `stats` reply at the same moment agree;
// per-route metrics carry the route's name as their `route` label. Torch-free: both front ends
// (ZeroMQ's metrics endpoint, HTTP's GET /metrics) serve it.
#include <nlohmann/json.hpp>

#include <string>
#include <utility>
#include <vector>

namespace osd {

std::string prometheus_text(const nlohmann::json& stats);

// Writes metric families: HELP and TYPE once per family, then its samples, with label values
// escaped (backslash, double quote, newline) and numbers in their shortest exact form.
class PrometheusWriter {
 public:
  using Labels = std::vector<std::pair<std::string, std::string>>;

  void family(const std::string& name, const char* type, const std::string& help);
  void sample(const std::string& name, const Labels& labels, double value);
  // A histogram family's samples from a Histogram::to_json object: _bucket (cumulative, one per
  // bound and +Inf), _sum and _count.
  void histogram(const std::string& name, const Labels& labels, const nlohmann::json& h);
  const std::string& text() const { return out_; }

  static std::string escape_label_value(const std::string& v);
  static std::string format_value(double v);

 private:
  std::string out_;
};

}  // namespace osd
