#pragma once
// The output contract of every osd-bench subcommand: a readable table, and with --json one JSON
// object as the last line of stdout.
#include <nlohmann/json.hpp>

#include <cstdio>
#include <string>
#include <vector>

namespace osd::bench {

class Report {
 public:
  Report(std::string bench, std::vector<std::string> columns)
      : bench_(std::move(bench)), columns_(std::move(columns)) {}

  // One row; cells are numbers or strings, in column order.
  void add(const std::vector<nlohmann::json>& cells) { rows_.push_back(cells); }
  // Extra facts (device, card, threads, ...) printed under the table and kept in the JSON.
  void note(const std::string& key, nlohmann::json value) { notes_[key] = std::move(value); }

  void print(bool json) const;

 private:
  std::string bench_;
  std::vector<std::string> columns_;
  std::vector<std::vector<nlohmann::json>> rows_;
  nlohmann::json notes_ = nlohmann::json::object();
};

// Seconds since an arbitrary epoch, after waiting for queued device work (CUDA) to finish.
double now_synced(bool cuda);

}  // namespace osd::bench
