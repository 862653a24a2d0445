#include "runtime/prometheus.hpp"

#include <sstream>

namespace osd {

std::string prometheus_text(const nlohmann::json& s) {
  std::ostringstream o;
  auto num = [](const nlohmann::json& v) { return v.is_number() ? v.get<double>() : 0.0; };
  auto metric = [&](const char* name, const char* type, const char* help, double value,
                    const std::string& labels = "") {
    o << "# HELP " << name << " " << help << "\n# TYPE " << name << " " << type << "\n"
      << name << labels << " " << value << "\n";
  };
  const auto& m = s.value("metrics", nlohmann::json::object());
  const auto& v = s.value("verifier", nlohmann::json::object());
  const auto& in = s.value("intake", nlohmann::json::object());
  const std::string draft = "{draft=\"0\"}";
  metric("osd_num_drafts_total", "counter", "Draft rounds (vLLM num_drafts).", num(m.value("num_drafts", 0)), draft);
  metric("osd_num_draft_tokens_total", "counter", "Draft tokens proposed.", num(m.value("num_draft_tokens", 0)), draft);
  metric("osd_num_accepted_tokens_total", "counter", "Draft tokens accepted.", num(m.value("num_accepted_tokens", 0)), draft);
  metric("osd_acceptance_rate", "gauge", "Accepted / proposed draft tokens.", num(m.value("acceptance_rate", 0)), draft);
  o << "# HELP osd_accepted_per_position_total Rounds whose draft token at this position was accepted.\n"
       "# TYPE osd_accepted_per_position_total counter\n";
  const auto& per = m.value("accepted_per_position", nlohmann::json::array());
  for (size_t i = 0; i < per.size(); ++i)
    o << "osd_accepted_per_position_total{draft=\"0\",position=\"" << i << "\"} " << num(per[i]) << "\n";
  o << "# HELP osd_requests_finished_total Requests finished, by reason.\n# TYPE osd_requests_finished_total counter\n";
  const auto finished = m.value("requests_finished", nlohmann::json::object());  // items() needs an lvalue
  for (const auto& [reason, n] : finished.items())
    o << "osd_requests_finished_total{reason=\"" << reason << "\"} " << num(n) << "\n";
  metric("osd_requests_in_flight", "gauge", "Requests admitted and not finished.", num(in.value("in_flight", 0)));
  metric("osd_verifier_waiting", "gauge", "Requests waiting for a KV cache slot.", num(v.value("waiting", 0)));
  metric("osd_mean_batch_size", "gauge", "Mean sequences per verification round.", num(m.value("mean_batch_size", 0)));
  metric("osd_tokens_per_second", "gauge", "Tokens emitted per second since start.", num(m.value("tokens_per_second", 0)));
  metric("osd_verifier_idle_fraction", "gauge", "Fraction of time the verifier was not verifying.",
         num(v.value("verifier_idle_fraction", 0)));
  metric("osd_draft_version", "gauge", "Version of the draft weights in use.", num(m.value("draft_version", 0)), draft);
  metric("osd_drafter_restarts_total", "counter", "Drafters respawned after a failure.", num(v.value("drafter_restarts", 0)));
  o << "# HELP osd_distill_updates_total Distiller decisions (published, rejected by guard, discarded).\n"
       "# TYPE osd_distill_updates_total counter\n";
  const auto distill = m.value("distill", nlohmann::json::object());
  const auto decisions = distill.value("decisions", nlohmann::json::object());
  for (const auto& [decision, n] : decisions.items())
    o << "osd_distill_updates_total{draft=\"0\",decision=\"" << decision << "\"} " << num(n) << "\n";
  for (const char* key : {"ttft_ms", "tpot_ms"}) {
    const std::string name = std::string("osd_") + key;
    o << "# HELP " << name << " " << (key[1] == 't' ? "Time to first token" : "Time per output token")
      << " (ms), recent requests.\n# TYPE " << name << " summary\n";
    const auto& q = m.value(key, nlohmann::json::object());
    for (auto [label, field] : {std::pair{"0.5", "p50"}, {"0.9", "p90"}, {"0.99", "p99"}})
      o << name << "{quantile=\"" << label << "\"} " << num(q.value(field, 0.0)) << "\n";
  }
  return o.str();
}

}  // namespace osd
