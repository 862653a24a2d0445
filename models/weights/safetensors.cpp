#include "models/weights/safetensors.hpp"

#include <torch/torch.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "models/common/error.hpp"

namespace osd {

namespace {

c10::ScalarType scalar_type(const std::string& d, const std::string& where) {
  if (d == "F32") return torch::kFloat32;
  if (d == "F16") return torch::kFloat16;
  if (d == "BF16") return torch::kBFloat16;
  if (d == "F64") return torch::kFloat64;
  if (d == "I64") return torch::kInt64;
  if (d == "I32") return torch::kInt32;
  if (d == "I16") return torch::kInt16;
  if (d == "I8") return torch::kInt8;
  if (d == "U8") return torch::kUInt8;
  if (d == "BOOL") return torch::kBool;
  throw Error(where + ": unsupported dtype '" + d + "'");
}

std::string dtype_code(c10::ScalarType t) {
  if (t == torch::kFloat32) return "F32";
  if (t == torch::kFloat16) return "F16";
  if (t == torch::kBFloat16) return "BF16";
  if (t == torch::kInt64) return "I64";
  throw Error("write_safetensors: unsupported tensor dtype " + std::string(c10::toString(t)));
}

}  // namespace

at::Tensor read_safetensors_tensor(const std::string& path, const SafetensorsHeader& h, const std::string& name) {
  auto it = h.tensors.find(name);
  if (it == h.tensors.end()) throw Error(path + ": missing tensor '" + name + "'");
  const auto& e = it->second;
  auto t = torch::empty(e.shape, torch::TensorOptions().dtype(scalar_type(e.dtype, path + ": tensor '" + name + "'")));
  std::ifstream f(path, std::ios::binary);
  f.seekg(static_cast<std::streamoff>(h.data_start + e.begin));
  f.read(static_cast<char*>(t.data_ptr()), static_cast<std::streamsize>(e.end - e.begin));
  if (!f) throw Error(path + ": tensor '" + name + "' could not be read");
  return t;
}

void write_safetensors(const std::string& path, const std::map<std::string, at::Tensor>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  nlohmann::json header = nlohmann::json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::vector<at::Tensor> data;
  uint64_t offset = 0;
  for (const auto& [name, t] : tensors) {
    auto c = t.detach().cpu().contiguous();
    const uint64_t bytes = static_cast<uint64_t>(c.numel()) * c.element_size();
    header[name] = {{"dtype", dtype_code(c.scalar_type())}, {"shape", c.sizes().vec()},
                    {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
    data.push_back(c);
  }
  std::string h = header.dump();
  while ((8 + h.size()) % 8) h.push_back(' ');  // align the data section to 8 bytes
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  if (!f) throw Error(path + ": cannot write");
  uint64_t n = h.size();
  char len[8];
  for (int i = 0; i < 8; ++i) len[i] = static_cast<char>((n >> (8 * i)) & 0xFF);
  f.write(len, 8);
  f.write(h.data(), static_cast<std::streamsize>(h.size()));
  for (const auto& c : data) f.write(static_cast<const char*>(c.data_ptr()), static_cast<std::streamsize>(c.numel() * c.element_size()));
  if (!f) throw Error(path + ": write failed");
}

}  // namespace osd
