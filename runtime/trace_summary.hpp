#pragma once
// Reading a Runtime::trace_json() Chrome trace: how busy each actor was, how much of one actor's
// busy time overlapped another's, and what a speculative round cost (medians of the drafter's
// proposals, the verifier's verifications, and the hops between them).
//
// A track name covers its per-route tracks: "drafter" reads "drafter" and "drafter <route>",
// "distiller (GPU)" reads "distiller (GPU)" and "distiller (GPU) <route>" ("drafter" does not
// read the "(GPU)" tracks). Host tracks time the actors' handlers; "(GPU)" tracks time their
// kernels by CUDA events.
#include <nlohmann/json.hpp>

#include <string>

namespace osd {

// Total busy time of a track family, in milliseconds (overlapping spans counted once).
double trace_busy_ms(const nlohmann::json& trace, const std::string& track);

// The fraction of `busy`'s busy time during which `other` was busy too.
double trace_overlap(const nlohmann::json& trace, const std::string& busy,
                     const std::string& other);

// {"busy_ms": {track: ms}, "overlap": {...}, "rounds": {...}} for the runtime's actors. "rounds"
// holds medians in ms over the speculative rounds: "propose" / "verify" (host spans),
// "propose_gpu" / "verify_gpu" (CUDA-event spans, where present), "hop_to_verify" (a proposal's
// end to its verification's start) and "hop_to_propose" (a verification's end to the group's
// next proposal), counting gaps under 5 ms only (longer ones are waits for work); and "count".
nlohmann::json summarize_trace(const nlohmann::json& trace);

}  // namespace osd
