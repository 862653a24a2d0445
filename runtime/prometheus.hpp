#pragma once
// Prometheus text exposition (format 0.0.4) of the runtime's stats JSON (Runtime::stats_json).
#include <nlohmann/json.hpp>

#include <string>

namespace osd {

std::string prometheus_text(const nlohmann::json& stats);

}  // namespace osd
