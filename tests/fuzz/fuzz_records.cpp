// libFuzzer target: the distillation records file reader (models/distillation/record_file.hpp:
// a route's held-out slice). Any bytes must load or be an osd::Error; what loads must encode to
// bytes that load back the same; no crash, leak or UB.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "models/common/error.hpp"
#include "models/distillation/record_file.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  std::vector<osd::DistillRecord> records;
  try {
    records = osd::decode_records(bytes, "fuzz.bin");
  } catch (const osd::Error&) {
    return 0;
  }
  const auto again = osd::decode_records(osd::encode_records(records), "again.bin");
  if (again.size() != records.size()) std::abort();
  for (size_t i = 0; i < again.size(); ++i)
    if (again[i].context != records[i].context || again[i].top_ids != records[i].top_ids) std::abort();
  return 0;
}
