#pragma once
// Rotary position embeddings, computed as Hugging Face transformers does (rotate_half layout,
// tables in float32, cast to the activation dtype when applied), with linear and llama3 scaling.
#include <ATen/core/Tensor.h>

#include "models/core/config.hpp"

namespace osd {

// inv_freq: [head_dim / 2] float32, scaling applied.
at::Tensor rope_inv_freq(const ModelConfig& config);

struct RopeTables {
  at::Tensor cos;         // [max_positions, head_dim] float32
  at::Tensor sin_signed;  // [max_positions, head_dim] float32: sin with rotate_half's sign folded
                          // in, [-sin(first half), sin(second half)]
};
RopeTables make_rope_tables(const ModelConfig& config, c10::Device device);

// x: [B, T, heads, head_dim]; cos, sin_signed: [B, T, 1, head_dim] in x's dtype. Returns rotated
// x, x * cos + rotate_half(x) * sin, as three kernels: rotate_half(x) * sin is
// roll(x, head_dim / 2) * sin_signed.
at::Tensor apply_rope(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin_signed);

}  // namespace osd
