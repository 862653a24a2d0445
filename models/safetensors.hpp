#pragma once
// The safetensors file format (Hugging Face): an 8-byte little-endian header length N, N bytes of
// JSON {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {...}}, then the data.
// The reader is hardened: every length, offset, dtype and shape is checked against the file
// before any tensor is made, and errors name the file and the tensor or key.
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace osd {

struct SafetensorsEntry {
  std::string dtype;             // F32, F16, BF16, ...
  std::vector<int64_t> shape;
  uint64_t begin = 0, end = 0;   // byte offsets into the data section
};

struct SafetensorsHeader {
  std::map<std::string, SafetensorsEntry> tensors;
  std::map<std::string, std::string> metadata;
  uint64_t data_start = 0;       // file offset of the data section
};

// Parses and validates a header against a file of `file_size` bytes. `bytes` holds at least the
// first 8 + N bytes of the file. Throws osd::Error("<file>: <what>").
SafetensorsHeader parse_safetensors_header(const std::string& bytes, uint64_t file_size, const std::string& file);
SafetensorsHeader read_safetensors_header(const std::string& path);

// Reads one tensor straight into a new CPU tensor of its dtype (one copy of the bytes).
at::Tensor read_safetensors_tensor(const std::string& path, const SafetensorsHeader& header, const std::string& name);

// Writes tensors (any device; F32/F16/BF16) in name order.
void write_safetensors(const std::string& path, const std::map<std::string, at::Tensor>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

}  // namespace osd
