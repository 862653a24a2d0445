#pragma once
// osd-bench online's command line: the options and their registration.
#include <CLI/CLI.hpp>

#include <string>
#include <vector>

#include "runtime/runtime.hpp"

namespace osd::bench {

struct OnlineBenchOptions {
  std::string target = "default", draft = "default", corpora = "build/corpora", device = "cpu",
              dtype = "float32";
  std::vector<std::string> domains{"python", "c", "english"};
  int64_t requests = 150, skip = 0, window = 50, new_tokens = 96, k = 4;
  std::vector<int64_t> concurrency{4};  // one level, or a sweep (e.g. 1 4 16 64)
  double temperature = 0;
  int64_t warmup = 2, repeats = 1, greedy_side = 16;
  bool routes = false, adaptive_k = false, warm_plans = true;
  bool control = false;  // a second static replay per repeat: the noise floor of the costs
  // The distillers' settings the flags below change, with the runtime's defaults (every replay
  // gets these; enabled and shadow are set per replay).
  OnlineOptions online;
  std::string tsv, png, trace, online_state, export_drafts, dump_prompts;
  std::vector<std::string> replays{"target", "static", "shadow", "online"};  // and "record"
  bool wanted(const std::string& replay) const;
  // Throws osd::Error on a combination that cannot run (before anything runs).
  void check() const;
};

void add_online_options(CLI::App* cmd, OnlineBenchOptions& o);

}  // namespace osd::bench
