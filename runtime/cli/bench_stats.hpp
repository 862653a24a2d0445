#pragma once
// What every osd-bench subcommand reports the same way (torch-free): the paper's predicted
// speedup beside the measured one, figures over repeats (median, min, max, per repeat), a
// difference's 95% interval, prompt hashes, and the scheduler's k distribution.
#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace osd::bench {

// ---- the paper's formula ---------------------------------------------------------------------
// Expected speedup of speculation with per-token acceptance alpha, k draft tokens per round and
// cost ratio c (one draft step / one target step), Leviathan et al.'s geometric model:
//   (1 - alpha^(k+1)) / ((1 - alpha) (k c + 1)).
// alpha is the per-token acceptance probability, estimated from accepted lengths as
// accepted / (accepted + rounds that ended in a rejection) (SpecStats::alpha), not the share of
// drafted tokens accepted (accepted / drafted), which truncation at k biases low.
double predicted_speedup(double alpha, double k, double c);

// {"alpha", "k", "c", "predicted_speedup", "measured_speedup", "efficiency"}: efficiency =
// measured / predicted (null where predicted is not positive).
nlohmann::json speedup_json(double alpha, double k, double c, double measured);

// ---- repeats ---------------------------------------------------------------------------------
// One figure over repeats: {"median", "min", "max", "per_repeat": [...]} (null entries, e.g. a
// replay that did not run, are left out; all null: null).
nlohmann::json spread(const std::vector<double>& per_repeat);
// The median of a spread's values (0 for none).
double median_of(std::vector<double> v);

// A difference measured once per repeat (e.g. the distiller's cost, 1 - tokens/s with / without):
// mean, sample standard error, the 95% interval of the mean (Student's t with n - 1 degrees of
// freedom), and whether that interval excludes `threshold` (resolved_at_5pct for 0.05): true
// when the repeats tell the difference apart from the threshold, false when they cannot.
struct Interval {
  double mean = 0, median = 0, stderr_ = 0, low = 0, high = 0, min = 0, max = 0;
  size_t n = 0;
  bool excludes(double x) const { return n >= 2 && (low > x || high < x); }
};
Interval interval95(const std::vector<double>& values);
// Student's t quantile at 0.975 for df degrees of freedom (df >= 1).
double t975(size_t df);
nlohmann::json interval_json(const std::vector<double>& values);

// ---- prompts ---------------------------------------------------------------------------------
// FNV-1a 64 of a prompt's token ids (each id as 8 little-endian bytes), as 16 hex digits.
std::string prompt_hash(const std::vector<int64_t>& tokens);

// ---- the scheduler's choice of k ---------------------------------------------------------------
// The verifier's scheduler counters, read from a runtime stats JSON where present
// ("scheduler": {"k_rows": [rows at k = 0, 1, ...], "rounds": R, "rounds_all_k0": R0}, under
// "verifier" or at the top level); absent: nothing known.
struct SchedulerCounts {
  bool known = false;
  std::vector<double> k_rows;
  double rounds = 0, rounds_all_k0 = 0;
  static SchedulerCounts from_stats(const nlohmann::json& stats);
  // The counts since `before` (e.g. a snapshot after warm-up), and the sum with another run's.
  SchedulerCounts since(const SchedulerCounts& before) const;
  SchedulerCounts plus(const SchedulerCounts& other) const;
  // {"k_distribution": [share of rows at k = 0, 1, ...], "k0_round_share": R0 / R}, or nulls
  // with "scheduler": "not reported by this runtime".
  nlohmann::json to_json() const;
};

}  // namespace osd::bench
