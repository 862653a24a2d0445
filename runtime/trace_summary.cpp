#include "runtime/trace_summary.hpp"

#include <algorithm>
#include <map>
#include <utility>
#include <vector>

namespace osd {

namespace {
using Span = std::pair<double, double>;  // [start, end) in microseconds

bool in_family(const std::string& tid, const std::string& track) {
  if (tid == track) return true;
  if (tid.compare(0, track.size() + 1, track + " ") != 0) return false;
  const bool gpu_track = track.find("(GPU)") != std::string::npos;
  return gpu_track || tid.compare(track.size() + 1, 5, "(GPU)") != 0;
}

// The time a track family was busy: its spans, sorted, overlapping ones (per-route tracks)
// merged into one.
std::vector<Span> busy_spans(const nlohmann::json& trace, const std::string& track) {
  std::vector<Span> all, out;
  if (!trace.contains("traceEvents")) return out;
  for (const auto& e : trace["traceEvents"])
    if (e.contains("dur") && e.contains("ts") && in_family(e.value("tid", std::string()), track))
      all.push_back({e["ts"].get<double>(), e["ts"].get<double>() + e["dur"].get<double>()});
  std::sort(all.begin(), all.end());
  for (const auto& sp : all) {
    if (!out.empty() && sp.first <= out.back().second)
      out.back().second = std::max(out.back().second, sp.second);
    else
      out.push_back(sp);
  }
  return out;
}

double median(std::vector<double> v) {
  if (v.empty()) return 0.0;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// "verify g2" -> "g2"; "" when the name has no group.
std::string group_of(const std::string& name) {
  const auto at = name.rfind(" g");
  return at == std::string::npos ? std::string() : name.substr(at + 1);
}
}  // namespace

double trace_busy_ms(const nlohmann::json& trace, const std::string& track) {
  double total = 0;
  for (auto [s, e] : busy_spans(trace, track)) total += e - s;
  return total / 1e3;
}

double trace_overlap(const nlohmann::json& trace, const std::string& busy,
                     const std::string& other) {
  const auto a = busy_spans(trace, busy), b = busy_spans(trace, other);
  double total = 0, both = 0;
  size_t first = 0;  // b is sorted by start; skip the spans that ended before a's starts
  for (auto [s, e] : a) {
    total += e - s;
    while (first < b.size() && b[first].second <= s) ++first;
    for (size_t j = first; j < b.size() && b[j].first < e; ++j)
      both += std::max(0.0, std::min(e, b[j].second) - std::max(s, b[j].first));
  }
  return total > 0 ? both / total : 0.0;
}

nlohmann::json summarize_trace(const nlohmann::json& trace) {
  nlohmann::json out;
  for (const char* t :
       {"verifier", "drafter", "distiller", "verifier (GPU)", "drafter (GPU)", "distiller (GPU)"})
    out["busy_ms"][t] = trace_busy_ms(trace, t);
  out["overlap"] = {
      {"distiller_with_verifier", trace_overlap(trace, "distiller", "verifier")},
      {"drafter_with_verifier", trace_overlap(trace, "drafter", "verifier")},
      {"distiller_with_verifier_gpu", trace_overlap(trace, "distiller (GPU)", "verifier (GPU)")},
      {"drafter_with_verifier_gpu", trace_overlap(trace, "drafter (GPU)", "verifier (GPU)")}};
  // Rounds: each group's host spans in time order, propose -> verify -> propose ...
  std::map<std::string, std::vector<std::pair<Span, bool>>> by_group;  // (span, is_verify)
  std::vector<double> propose, verify, propose_gpu, verify_gpu, to_verify, to_propose;
  // Distillation updates: how long one took on the host (sample to publish) and on the GPU (its
  // stream's events).
  std::vector<double> update, update_gpu;
  if (trace.contains("traceEvents")) {
    for (const auto& e : trace["traceEvents"]) {
      if (!e.contains("dur") || !e.contains("ts")) continue;
      const auto tid = e.value("tid", std::string()), name = e.value("name", std::string());
      const double ts = e["ts"].get<double>(), dur = e["dur"].get<double>();
      const bool gpu = tid.find("(GPU)") != std::string::npos;
      if (name == "distill update") {
        (gpu ? update_gpu : update).push_back(dur / 1e3);
        continue;
      }
      const bool is_propose = name.rfind("propose", 0) == 0,
                 is_verify = name.rfind("verify", 0) == 0;
      if (!is_propose && !is_verify) continue;
      if (gpu) {
        (is_propose ? propose_gpu : verify_gpu).push_back(dur / 1e3);
        continue;
      }
      (is_propose ? propose : verify).push_back(dur / 1e3);
      by_group[group_of(name)].push_back({{ts, ts + dur}, is_verify});
    }
  }
  for (auto& [group, events] : by_group) {
    std::sort(events.begin(), events.end());
    for (size_t i = 1; i < events.size(); ++i) {
      const double gap = (events[i].first.first - events[i - 1].first.second) / 1e3;
      if (gap < 0 || gap >= 5.0 || events[i].second == events[i - 1].second) continue;
      (events[i].second ? to_verify : to_propose).push_back(gap);
    }
  }
  double update_total = 0;
  for (double d : update) update_total += d;
  out["distill"] = {{"updates", update.size()},
                    {"update_ms", median(update)},
                    {"update_gpu_ms", median(update_gpu)},
                    {"total_ms", update_total}};
  out["rounds"] = {{"count", verify.size()},
                   {"propose", median(propose)},
                   {"verify", median(verify)},
                   {"propose_gpu", median(propose_gpu)},
                   {"verify_gpu", median(verify_gpu)},
                   {"hop_to_verify", median(to_verify)},
                   {"hop_to_propose", median(to_propose)}};
  return out;
}

}  // namespace osd
