#pragma once
// osd's logging: spdlog behind a string interface. spdlog 1.10 (Debian) needs fmt 9, while pip's
// torch 2.x ships fmt 12 headers on its include path; so spdlog is compiled only in
// runtime/log.cpp, a library without torch (target osd_log), and callers pass finished strings.
#include <sstream>
#include <string>

namespace osd::log {

void info(const std::string& message);
void warn(const std::string& message);
void error(const std::string& message);

// Concatenates anything streamable: log::info(log::cat("version ", v, " saved")).
template <class... Args>
std::string cat(const Args&... args) {
  std::ostringstream s;
  (s << ... << args);
  return s.str();
}

}  // namespace osd::log
