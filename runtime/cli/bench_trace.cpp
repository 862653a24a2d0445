// osd-bench trace: reads a Chrome trace the runtime wrote (Runtime::trace_json, `osd-bench online
// --trace FILE`, `osd-bench serve --trace FILE`) and prints what runtime/trace_summary.hpp reads
// from it: busy time per actor (host and CUDA-event tracks, routes together), overlaps, and the
// medians of a speculative round (proposal, verification, hops). Uncompress .json.gz first.
#include <CLI/CLI.hpp>

#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "models/common/error.hpp"
#include "runtime/cli/bench_report.hpp"
#include "runtime/cli/benches.hpp"
#include "runtime/trace_summary.hpp"

namespace osd::bench {

void add_trace_bench(CLI::App& app, bool& json) {
  auto* cmd =
      app.add_subcommand("trace", "summarize a runtime trace: busy time, overlap, round medians");
  auto file = std::make_shared<std::string>();
  cmd->add_option("file", *file, "trace JSON (Chrome format, as the runtime writes it)")
      ->required();
  cmd->callback([file, &json] {
    std::ifstream in(*file);
    if (!in) throw Error("trace: cannot open " + *file);
    nlohmann::json trace = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
    if (trace.is_discarded() || !trace.is_object() || !trace.contains("traceEvents") ||
        !trace["traceEvents"].is_array())
      throw Error("trace: " + *file +
                  " is not a Chrome trace with a traceEvents array (a .gz must be "
                  "uncompressed first)");
    const auto sum = summarize_trace(trace);
    Report rep("trace", {"quantity", "value"});
    for (const auto& [track, ms] : sum["busy_ms"].items()) rep.add({"busy ms, " + track, ms});
    for (const auto& [pair, f] : sum["overlap"].items()) rep.add({"overlap, " + pair, f});
    for (const auto& [what, v] : sum["rounds"].items())
      rep.add({what == "count" ? std::string("rounds") : "round median ms, " + what, v});
    for (const auto& [what, v] : sum["distill"].items())
      rep.add({what == "updates"    ? std::string("distill updates")
               : what == "total_ms" ? std::string("distill ms, all updates")
                                    : "distill median ms, " + what,
               v});
    rep.note("file", *file);
    rep.note("events", trace["traceEvents"].size());
    rep.print(json);
  });
}

}  // namespace osd::bench
