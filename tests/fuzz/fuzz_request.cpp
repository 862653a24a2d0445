// libFuzzer target: one request frame of the ZeroMQ protocol through the front end's parser
// (runtime/request_parser.hpp), in process. Any bytes must give a request or an error code; no
// exception, crash, leak or UB.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "runtime/request_parser.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const osd::RequestParserOptions opt = [] {
    osd::RequestParserOptions o;
    o.max_frame_bytes = 64 * 1024;
    o.max_id_bytes = 64;
    o.encode = [](const std::string& text) {
      std::vector<int64_t> ids;
      for (unsigned char c : text) ids.push_back(c);
      return ids;
    };
    o.default_eos = {2};
    return o;
  }();
  const std::string frame(reinterpret_cast<const char*>(data), size);
  const auto r = osd::parse_request(frame, opt);
  // Invariants: an error has a code and a message; an id never exceeds the limit.
  if (r.op == osd::RequestOp::invalid && (r.error_code.empty() || r.error_message.empty())) std::abort();
  if (r.id.size() > opt.max_id_bytes) std::abort();
  if (r.op == osd::RequestOp::generate && frame.size() > opt.max_frame_bytes) std::abort();
  return 0;
}
