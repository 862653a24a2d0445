#pragma once
// The safetensors header (Hugging Face): an 8-byte little-endian length N, then N bytes of JSON
// {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {...}}. Parsed and checked
// against the file before any tensor is read; torch-free, so the fuzzer builds without libtorch.
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace osd {

struct SafetensorsEntry {
  std::string dtype;  // F32, F16, BF16, ...
  std::vector<int64_t> shape;
  uint64_t begin = 0, end = 0;  // byte offsets into the data section
};

struct SafetensorsHeader {
  std::map<std::string, SafetensorsEntry> tensors;
  std::map<std::string, std::string> metadata;
  uint64_t data_start = 0;  // file offset of the data section
};

// Parses and validates a header against a file of `file_size` bytes. `bytes` holds at least the
// first 8 + N bytes of the file. Throws osd::Error("<file>: <what>").
SafetensorsHeader parse_safetensors_header(const std::string& bytes, uint64_t file_size,
                                           const std::string& file);
SafetensorsHeader read_safetensors_header(const std::string& path);

// Bytes per element of a safetensors dtype code, 0 if unknown.
int64_t safetensors_dtype_size(const std::string& dtype);

}  // namespace osd
