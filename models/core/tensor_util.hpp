#pragma once
// Small torch helpers shared by models/: dtype mapping and argument checks that throw osd::Error.
#include <ATen/core/Tensor.h>

#include <string>
#include <vector>

#include "models/core/config.hpp"
#include "models/common/error.hpp"

namespace osd {

c10::ScalarType to_scalar_type(DType d);
DType from_scalar_type(c10::ScalarType t);

// Throws osd::Error("<what>: expected shape [..], got [..]") unless t has `dims` dimensions.
void check_dims(const at::Tensor& t, int64_t dims, const std::string& what);
// Throws unless t has scalar type `type`.
void check_dtype(const at::Tensor& t, c10::ScalarType type, const std::string& what);
std::string shape_str(const at::Tensor& t);
// A host tensor on `device` without waiting for the device. A plain .to() from pageable host
// memory to a GPU makes libtorch wait for the stream after the copy (a host sync per small
// tensor: the drafter's and verifier's steps spent most of their time there); this copy is
// queued instead, and CUDA stages the host bytes before returning, so the source may go at once.
at::Tensor to_device(const at::Tensor& t, c10::Device device);
// [B, width] bool on `device`: row i is true at positions j < lengths[i] (e.g. the draft tokens
// row i proposed, of a batch padded to `width`).
at::Tensor prefix_mask(const std::vector<int64_t>& lengths, int64_t width, c10::Device device);

// A tensor as bytes (torch's pickle format, via the CPU) and back; undefined <-> empty. This is
// how tensors in actor messages cross processes.
std::vector<char> tensor_to_bytes(const at::Tensor& t);
at::Tensor tensor_from_bytes(const std::vector<char>& bytes);

// Sets libtorch's intra-op threads from the machine's core count (or OSD_THREADS).
void init_torch_threads();

}  // namespace osd
