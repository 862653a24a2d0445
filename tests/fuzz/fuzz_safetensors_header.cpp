// libFuzzer target: the safetensors header parser on arbitrary bytes (scripts/fuzz.sh).
// Any input must give a header or an osd::Error, never a crash, leak or undefined behaviour.
#include <cstddef>
#include <cstdint>
#include <string>

#include "models/common/error.hpp"
#include "models/weights/safetensors_header.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  // The fuzzer also picks the file size the header is checked against (from the first byte).
  const uint64_t file_size = size + (size ? data[0] % 3 : 0) * 1000;
  try {
    const auto h = osd::parse_safetensors_header(bytes, file_size, "fuzz.safetensors");
    for (const auto& [name, e] : h.tensors)
      if (e.end < e.begin || h.data_start + e.end > file_size)
        __builtin_trap();  // a header that passed must be in bounds
  } catch (const osd::Error&) {
  }
  return 0;
}
