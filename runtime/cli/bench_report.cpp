#include "runtime/cli/bench_report.hpp"

#include <torch/torch.h>
#include <torch/cuda.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <iostream>
#include <sstream>

namespace osd::bench {

namespace {
std::string cell_text(const nlohmann::json& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_number_float()) {
    double d = v.get<double>();
    std::ostringstream s;
    s.precision(d != 0 && std::abs(d) < 0.01 ? 3 : (std::abs(d) < 100 ? 3 : 1));
    s << (std::abs(d) < 0.01 && d != 0 ? std::scientific : std::fixed) << d;
    return s.str();
  }
  return v.dump();
}
}  // namespace

void Report::print(bool json) const {
  std::vector<size_t> width(columns_.size());
  for (size_t c = 0; c < columns_.size(); ++c) width[c] = columns_[c].size();
  for (const auto& r : rows_)
    for (size_t c = 0; c < r.size() && c < width.size(); ++c)
      width[c] = std::max(width[c], cell_text(r[c]).size());
  auto line = [&](const std::vector<std::string>& cells) {
    std::cout << "|";
    for (size_t c = 0; c < width.size(); ++c) {
      std::string t = c < cells.size() ? cells[c] : "";
      std::cout << " " << t << std::string(width[c] - t.size(), ' ') << " |";
    }
    std::cout << "\n";
  };
  std::cout << "\nosd-bench " << bench_ << "\n";
  line(columns_);
  std::cout << "|";
  for (auto w : width) std::cout << std::string(w + 2, '-') << "|";
  std::cout << "\n";
  for (const auto& r : rows_) {
    std::vector<std::string> cells;
    for (const auto& v : r) cells.push_back(cell_text(v));
    line(cells);
  }
  for (const auto& [k, v] : notes_.items()) std::cout << "  " << k << ": " << cell_text(v) << "\n";
  if (json) {
    nlohmann::json out = {{"bench", bench_}, {"columns", columns_}, {"notes", notes_}};
    nlohmann::json rows = nlohmann::json::array();
    for (const auto& r : rows_) {
      nlohmann::json o;
      for (size_t c = 0; c < r.size() && c < columns_.size(); ++c) o[columns_[c]] = r[c];
      rows.push_back(o);
    }
    out["rows"] = rows;
    std::cout << out.dump() << std::endl;
  }
  std::cout.flush();
}

double now_synced(bool cuda) {
  if (cuda) torch::cuda::synchronize();
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

}  // namespace osd::bench
