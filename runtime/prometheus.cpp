#include "runtime/prometheus.hpp"

#include <cmath>

namespace osd {

using json = nlohmann::json;

std::string PrometheusWriter::escape_label_value(const std::string& v) {
  std::string out;
  out.reserve(v.size());
  for (char c : v) {
    if (c == '\\') out += "\\\\";
    else if (c == '"') out += "\\\"";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
  return out;
}

std::string PrometheusWriter::format_value(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  if (v == std::floor(v) && std::fabs(v) < 1e15) return std::to_string(static_cast<int64_t>(v));
  return json(v).dump();  // shortest representation that reads back as the same double
}

void PrometheusWriter::family(const std::string& name, const char* type, const std::string& help) {
  // HELP text escapes backslash and newline.
  std::string h;
  for (char c : help) h += c == '\\' ? std::string("\\\\") : c == '\n' ? std::string("\\n") : std::string(1, c);
  out_ += "# HELP " + name + " " + h + "\n# TYPE " + name + " " + type + "\n";
}

void PrometheusWriter::sample(const std::string& name, const Labels& labels, double value) {
  out_ += name;
  if (!labels.empty()) {
    out_ += '{';
    for (size_t i = 0; i < labels.size(); ++i) {
      if (i) out_ += ',';
      out_ += labels[i].first + "=\"" + escape_label_value(labels[i].second) + '"';
    }
    out_ += '}';
  }
  out_ += ' ' + format_value(value) + '\n';
}

void PrometheusWriter::histogram(const std::string& name, const Labels& labels, const json& h) {
  const auto& le = h.at("le");
  const auto& counts = h.at("counts");
  for (size_t i = 0; i < le.size() && i < counts.size(); ++i) {
    auto l = labels;
    l.emplace_back("le", format_value(le[i].get<double>()));
    sample(name + "_bucket", l, counts[i].get<double>());
  }
  auto inf = labels;
  inf.emplace_back("le", "+Inf");
  sample(name + "_bucket", inf, h.at("count").get<double>());
  sample(name + "_sum", labels, h.at("sum").get<double>());
  sample(name + "_count", labels, h.at("count").get<double>());
}

namespace {

// A field of an object as a number; 0 where absent or not a number (e.g. an actor that did not
// answer gives null).
double num(const json& obj, const char* key) {
  if (!obj.is_object()) return 0.0;
  const auto it = obj.find(key);
  return it != obj.end() && it->is_number() ? it->get<double>() : 0.0;
}

const json& object(const json& obj, const char* key) {
  static const json empty = json::object();
  if (!obj.is_object()) return empty;
  const auto it = obj.find(key);
  return it != obj.end() && it->is_object() ? *it : empty;
}

struct HistogramFamily {
  const char* key;  // in metrics.histograms
  const char* help;
};

}  // namespace

std::string prometheus_text(const json& s) {
  PrometheusWriter w;
  const auto& m = object(s, "metrics");
  const auto& v = object(s, "verifier");
  const auto& in = object(s, "intake");
  const auto& routes = object(m, "routes");
  using Labels = PrometheusWriter::Labels;

  // Requests.
  w.family("osd_requests_finished_total", "counter", "Requests finished by the verifier, by finish reason.");
  for (const auto& [reason, n] : object(m, "requests_finished").items())
    w.sample("osd_requests_finished_total", {{"reason", reason}}, n.is_number() ? n.get<double>() : 0);
  w.family("osd_requests_refused_total", "counter", "Requests refused at admission, by error code.");
  for (const auto& [code, n] : object(in, "refused").items())
    w.sample("osd_requests_refused_total", {{"code", code}}, n.is_number() ? n.get<double>() : 0);
  w.family("osd_requests_in_flight", "gauge", "Requests admitted and not finished.");
  w.sample("osd_requests_in_flight", {}, num(in, "in_flight"));
  w.family("osd_verifier_waiting", "gauge", "Requests waiting for a KV cache slot.");
  w.sample("osd_verifier_waiting", {}, num(v, "waiting"));

  // Speculation, per draft route (labels: the route's name).
  struct PerRoute {
    const char* name;
    const char* type;
    const char* help;
    const char* key;
  };
  for (const auto& f : {
           PerRoute{"osd_num_drafts_total", "counter", "Draft rounds (rounds that proposed at least one token).", "num_drafts"},
           PerRoute{"osd_num_draft_tokens_total", "counter", "Draft tokens proposed.", "num_draft_tokens"},
           PerRoute{"osd_num_accepted_tokens_total", "counter", "Draft tokens accepted.", "num_accepted_tokens"},
           PerRoute{"osd_acceptance_rate", "gauge", "Accepted / proposed draft tokens since start.", "acceptance_rate"},
           PerRoute{"osd_recent_acceptance_rate", "gauge",
                    "Accepted / proposed draft tokens over the route's most recent requests that drafted "
                    "(osd_recent_acceptance_requests of them); falls first when traffic drifts away "
                    "from the draft.",
                    "recent_acceptance_rate"},
           PerRoute{"osd_recent_acceptance_requests", "gauge", "Requests in the recent-acceptance window.",
                    "recent_requests"},
           PerRoute{"osd_draft_version", "gauge", "Version of the draft weights serving the route.", "draft_version"},
       }) {
    w.family(f.name, f.type, f.help);
    for (const auto& [route, r] : routes.items()) w.sample(f.name, {{"route", route}}, num(r, f.key));
  }
  struct PerDecision {
    const char* name;
    const char* help;
    const char* key;
  };
  for (const auto& f : {
           PerDecision{"osd_draft_publishes_total", "Distiller updates published to serving.", "published"},
           PerDecision{"osd_draft_rejections_total",
                       "Distiller updates the guard did not publish (held or rolled back).", "rejected"},
           PerDecision{"osd_draft_rollbacks_total",
                       "Distiller updates rolled back to the published weights (held-out acceptance fell).",
                       "rolled_back"},
       }) {
    w.family(f.name, "counter", f.help);
    for (const auto& [route, r] : routes.items())
      w.sample(f.name, {{"route", route}}, num(object(r, "distill"), f.key));
  }
  w.family("osd_distill_updates_total", "counter",
           "Distiller updates by decision: published, held, rolled_back, deferred (held-out slice too "
           "small), discarded (non-finite loss), other.");
  for (const auto& [route, r] : routes.items())
    for (const auto& [decision, n] : object(r, "distill").items())
      if (decision != "rejected")  // held + rolled_back, counted above
        w.sample("osd_distill_updates_total", {{"route", route}, {"decision", decision}},
                 n.is_number() ? n.get<double>() : 0);
  w.family("osd_acceptance_length", "histogram",
           "Draft tokens accepted per draft round, by route and the draft version serving it when "
           "the request finished.");
  for (const auto& [route, r] : routes.items())
    for (const auto& [version, h] : object(r, "acceptance_length_by_version").items())
      w.histogram("osd_acceptance_length", {{"route", route}, {"draft_version", version}}, h);
  w.family("osd_accepted_per_position_total", "counter",
           "Draft rounds whose draft token at this position was accepted (all routes).");
  const auto per = m.value("accepted_per_position", json::array());
  for (size_t i = 0; i < per.size(); ++i)
    w.sample("osd_accepted_per_position_total", {{"position", std::to_string(i)}},
             per[i].is_number() ? per[i].get<double>() : 0);

  // Latencies and lengths.
  const auto& hist = object(m, "histograms");
  for (const auto& f : {
           HistogramFamily{"time_to_first_token_seconds", "Time from submission to the first token."},
           HistogramFamily{"time_per_output_token_seconds",
                           "Time per output token after the first, per request."},
           HistogramFamily{"e2e_request_latency_seconds", "Time from submission to the final token."},
           HistogramFamily{"request_queue_time_seconds",
                           "Time from submission to admission into a KV cache slot."},
           HistogramFamily{"request_prompt_tokens", "Prompt length in tokens."},
           HistogramFamily{"request_generation_tokens", "Generated tokens per request."},
       }) {
    if (!hist.contains(f.key)) continue;
    const std::string name = std::string("osd_") + f.key;
    w.family(name, "histogram", f.help);
    w.histogram(name, Labels{}, hist.at(f.key));
  }

  // Batching and the verifier.
  w.family("osd_mean_batch_size", "gauge", "Mean sequences per verification round since start.");
  w.sample("osd_mean_batch_size", {}, num(m, "mean_batch_size"));
  w.family("osd_tokens_per_second", "gauge", "Tokens emitted per second since start.");
  w.sample("osd_tokens_per_second", {}, num(m, "tokens_per_second"));
  w.family("osd_verifier_idle_fraction", "gauge", "Fraction of time the verifier was not verifying.");
  w.sample("osd_verifier_idle_fraction", {}, num(v, "verifier_idle_fraction"));
  w.family("osd_drafter_restarts_total", "counter", "Drafters respawned after a failure.");
  w.sample("osd_drafter_restarts_total", {}, num(v, "drafter_restarts"));
  return w.text();
}

}  // namespace osd
