#include "models/common/log.hpp"

#include <spdlog/spdlog.h>

namespace osd::log {

void info(const std::string& m) { spdlog::info(m); }
void warn(const std::string& m) { spdlog::warn(m); }
void error(const std::string& m) { spdlog::error(m); }

}  // namespace osd::log
