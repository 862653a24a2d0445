#include "models/core/tensor_util.hpp"

#include <torch/torch.h>
#include <torch/csrc/jit/serialization/pickle.h>

#include <cstdlib>
#include <sstream>
#include <thread>

namespace osd {

c10::ScalarType to_scalar_type(DType d) {
  switch (d) {
    case DType::f32: return torch::kFloat32;
    case DType::bf16: return torch::kBFloat16;
    case DType::f16: return torch::kFloat16;
  }
  return torch::kFloat32;
}

DType from_scalar_type(c10::ScalarType t) {
  if (t == torch::kBFloat16) return DType::bf16;
  if (t == torch::kFloat16) return DType::f16;
  return DType::f32;
}

at::Tensor to_device(const at::Tensor& t, c10::Device device) {
  if (t.device() == device) return t;
  return t.to(device, /*non_blocking=*/t.is_cpu() && device.is_cuda());
}

at::Tensor prefix_mask(const std::vector<int64_t>& lengths, int64_t width, c10::Device device) {
  auto positions = torch::arange(width, torch::TensorOptions().dtype(torch::kInt64).device(device));
  return positions.unsqueeze(0) < to_device(torch::tensor(lengths, torch::kInt64), device).unsqueeze(1);
}

std::string shape_str(const at::Tensor& t) {
  if (!t.defined()) return "<undefined>";
  std::ostringstream s;
  s << "[";
  for (int64_t i = 0; i < t.dim(); ++i) s << (i ? ", " : "") << t.size(i);
  s << "]";
  return s.str();
}

void check_dims(const at::Tensor& t, int64_t dims, const std::string& what) {
  if (!t.defined()) throw Error(what + ": tensor is undefined");
  if (t.dim() != dims)
    throw Error(what + ": expected " + std::to_string(dims) + " dimensions, got shape " +
                shape_str(t));
}

void check_dtype(const at::Tensor& t, c10::ScalarType type, const std::string& what) {
  if (t.scalar_type() != type)
    throw Error(what + ": expected dtype " + std::string(c10::toString(type)) + ", got " +
                std::string(c10::toString(t.scalar_type())));
}

std::vector<char> tensor_to_bytes(const at::Tensor& t) {
  if (!t.defined()) return {};
  return torch::jit::pickle_save(t.cpu());
}

at::Tensor tensor_from_bytes(const std::vector<char>& bytes) {
  if (bytes.empty()) return {};
  try {
    return torch::jit::pickle_load(bytes).toTensor();
  } catch (const std::exception& e) {
    throw Error(std::string("cannot decode a serialized tensor: ") + e.what());
  }
}

void init_torch_threads() {
  int n = static_cast<int>(std::thread::hardware_concurrency());
  if (const char* env = std::getenv("OSD_THREADS")) n = std::atoi(env);
  if (n < 1) n = 1;
  at::set_num_threads(n);
}

}  // namespace osd
