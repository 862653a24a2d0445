#pragma once
// One request frame of osd's ZeroMQ protocol (docs/PROTOCOL.md) -> what to do, or the error to
// answer. Torch-free and without sockets, so the fuzzer (tests/fuzz/fuzz_request.cpp) runs it
// in process. Semantic checks (vocabulary, context, sampling ranges, list bounds) are the
// intake's; this checks the frame: size, JSON, field names (an unknown one is refused, naming
// the nearest accepted one), types, ids.
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "runtime/runtime.hpp"

namespace osd {

struct RequestParserOptions {
  size_t max_frame_bytes = 1 << 20;  // larger frames: "frame_too_large"
  size_t max_id_bytes = 256;         // longer ids: "invalid_request"
  // Prompt text -> token ids; empty: requests must send "tokens".
  std::function<std::vector<int64_t>(const std::string&)> encode;
  std::vector<int64_t> default_eos;  // eos ids of a request that sends no "eos"
};

enum class RequestOp { generate, cancel, stats, health, invalid };

struct ParsedRequest {
  RequestOp op = RequestOp::invalid;
  std::string id;          // the client's id ("" when it sent none)
  bool id_known = false;   // the error concerns a request with this id (else "id": null)
  GenerateParams params;   // generate (params.id is left empty)
  std::string error_code, error_message;  // invalid
};

ParsedRequest parse_request(const std::string& frame, const RequestParserOptions& opt);

}  // namespace osd
