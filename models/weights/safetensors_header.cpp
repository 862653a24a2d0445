#include "models/weights/safetensors_header.hpp"

#include <algorithm>
#include <fstream>
#include <nlohmann/json.hpp>

#include "models/common/error.hpp"

namespace osd {

int64_t safetensors_dtype_size(const std::string& d) {
  if (d == "F32" || d == "I32") return 4;
  if (d == "F16" || d == "BF16" || d == "I16") return 2;
  if (d == "F64" || d == "I64") return 8;
  if (d == "U8" || d == "I8" || d == "BOOL") return 1;
  return 0;
}

SafetensorsHeader parse_safetensors_header(const std::string& bytes, uint64_t file_size,
                                           const std::string& file) {
  if (bytes.size() < 8 || file_size < 8)
    throw Error(file + ": truncated safetensors file (no header length)");
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<unsigned char>(bytes[i]);
  if (n > file_size - 8)
    throw Error(file + ": header length " + std::to_string(n) + " runs past the end of the file");
  if (n > (uint64_t{100} << 20))
    throw Error(file + ": header length " + std::to_string(n) + " is absurd (> 100 MiB)");
  if (bytes.size() < 8 + n) throw Error(file + ": truncated header");
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(bytes.begin() + 8,
                              bytes.begin() + 8 + static_cast<std::ptrdiff_t>(n));
  } catch (const std::exception& e) {
    throw Error(file + ": header is not valid JSON: " + e.what());
  }
  if (!j.is_object()) throw Error(file + ": header is not a JSON object");
  SafetensorsHeader h;
  h.data_start = 8 + n;
  const uint64_t data_size = file_size - h.data_start;
  std::vector<std::pair<uint64_t, uint64_t>> ranges;
  for (auto& [name, v] : j.items()) {
    const std::string where = file + ": tensor '" + name + "'";
    if (name == "__metadata__") {
      if (!v.is_object()) throw Error(file + ": __metadata__ is not an object");
      for (auto& [k, mv] : v.items()) {
        if (!mv.is_string())
          throw Error(file + ": __metadata__ value of '" + k + "' is not a string");
        h.metadata[k] = mv.get<std::string>();
      }
      continue;
    }
    if (!v.is_object() || !v.contains("dtype") || !v.contains("shape") ||
        !v.contains("data_offsets"))
      throw Error(where + ": needs dtype, shape and data_offsets");
    if (!v["dtype"].is_string()) throw Error(where + ": dtype is not a string");
    SafetensorsEntry e;
    e.dtype = v["dtype"].get<std::string>();
    const int64_t esize = safetensors_dtype_size(e.dtype);
    if (esize == 0) throw Error(where + ": unknown dtype '" + e.dtype + "'");
    if (!v["shape"].is_array() || v["shape"].size() > 8)
      throw Error(where + ": shape is not an array of <= 8 sizes");
    uint64_t count = 1;
    for (auto& d : v["shape"]) {
      if (!d.is_number_unsigned())
        throw Error(where + ": shape entries must be non-negative integers");
      const uint64_t dim = d.get<uint64_t>();
      if (dim > (uint64_t{1} << 40) || (dim && count > (uint64_t{1} << 62) / dim))
        throw Error(where + ": shape overflows");
      count *= dim;
      e.shape.push_back(static_cast<int64_t>(dim));
    }
    const auto& off = v["data_offsets"];
    if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() ||
        !off[1].is_number_unsigned())
      throw Error(where + ": data_offsets must be two non-negative integers");
    e.begin = off[0].get<uint64_t>();
    e.end = off[1].get<uint64_t>();
    if (e.end < e.begin) throw Error(where + ": data_offsets end before they begin");
    if (e.end > data_size) throw Error(where + ": data_offsets run past the end of the file");
    if (e.end - e.begin != count * static_cast<uint64_t>(esize))
      throw Error(where + ": " + std::to_string(e.end - e.begin) +
                  " bytes do not match shape and dtype (" + std::to_string(count * esize) +
                  " expected)");
    ranges.push_back({e.begin, e.end});
    h.tensors.emplace(name, std::move(e));
  }
  std::sort(ranges.begin(), ranges.end());
  for (size_t i = 1; i < ranges.size(); ++i)
    if (ranges[i].first < ranges[i - 1].second)
      throw Error(file + ": tensors' data_offsets overlap");
  return h;
}

SafetensorsHeader read_safetensors_header(const std::string& path) {
  std::ifstream f(path, std::ios::binary | std::ios::ate);
  if (!f) throw Error(path + ": cannot open");
  const uint64_t size = static_cast<uint64_t>(f.tellg());
  f.seekg(0);
  std::string head(std::min<uint64_t>(size, 8), '\0');
  f.read(head.data(), static_cast<std::streamsize>(head.size()));
  if (size < 8) throw Error(path + ": truncated safetensors file (no header length)");
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<unsigned char>(head[i]);
  if (n > size - 8 || n > (uint64_t{100} << 20))
    return parse_safetensors_header(head, size, path);  // throws
  head.resize(8 + n);
  f.read(head.data() + 8, static_cast<std::streamsize>(n));
  return parse_safetensors_header(head, size, path);
}

}  // namespace osd
