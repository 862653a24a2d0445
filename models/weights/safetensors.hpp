#pragma once
// The safetensors file format (Hugging Face): an 8-byte little-endian header length N, N bytes of
// JSON {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {...}}, then the data.
// The reader is hardened: every length, offset, dtype and shape is checked against the file
// before any tensor is made, and errors name the file and the tensor or key.
#include <ATen/core/Tensor.h>

#include "models/weights/safetensors_header.hpp"

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace osd {

// Reads one tensor straight into a new CPU tensor of its dtype (one copy of the bytes).
at::Tensor read_safetensors_tensor(const std::string& path, const SafetensorsHeader& header, const std::string& name);

// Writes tensors (any device; F32/F16/BF16) in name order.
void write_safetensors(const std::string& path, const std::map<std::string, at::Tensor>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

}  // namespace osd
