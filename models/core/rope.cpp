#include "models/core/rope.hpp"

#include <torch/torch.h>

#include <cmath>

namespace osd {

at::Tensor rope_inv_freq(const ModelConfig& c) {
  const int64_t dim = c.head_dim;
  // HF: 1 / base ** (arange(0, dim, 2, int64).float() / dim)
  auto exponent = torch::arange(0, dim, 2, torch::kInt64).to(torch::kFloat32) / static_cast<double>(dim);
  auto inv_freq = 1.0 / torch::pow(c.rope_theta, exponent);
  const auto& s = c.rope_scaling;
  if (s.type == RopeScalingType::linear) {
    inv_freq = inv_freq / s.factor;
  } else if (s.type == RopeScalingType::llama3) {
    const double old_len = static_cast<double>(s.original_max_position_embeddings);
    const double low_wavelen = old_len / s.low_freq_factor;
    const double high_wavelen = old_len / s.high_freq_factor;
    auto wavelen = 2 * M_PI / inv_freq;
    auto scaled = torch::where(wavelen > low_wavelen, inv_freq / s.factor, inv_freq);
    auto smooth = (old_len / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
    auto smoothed = (1 - smooth) * scaled / s.factor + smooth * scaled;
    auto medium = (wavelen >= high_wavelen).logical_and(wavelen <= low_wavelen);
    inv_freq = torch::where(medium, smoothed, scaled);
  }
  return inv_freq;
}

RopeTables make_rope_tables(const ModelConfig& c, c10::Device device) {
  auto inv_freq = rope_inv_freq(c);                                           // [D/2]
  auto pos = torch::arange(c.max_position_embeddings, torch::kInt64).to(torch::kFloat32);
  auto freqs = pos.unsqueeze(1) * inv_freq.unsqueeze(0);                      // [P, D/2]
  auto emb = torch::cat({freqs, freqs}, -1);                                  // [P, D]
  auto sin = emb.sin();
  const int64_t half = c.head_dim / 2;
  auto sin_signed = torch::cat({-sin.narrow(1, 0, half), sin.narrow(1, half, half)}, -1);  // [P, D]
  return {emb.cos().to(device), sin_signed.to(device)};
}

at::Tensor apply_rope(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin_signed) {
  // roll by half: [x2, x1]; times [-sin, sin]: [-x2 sin, x1 sin] = rotate_half(x) * sin.
  return torch::addcmul(x * cos, torch::roll(x, x.size(-1) / 2, -1), sin_signed);
}

}  // namespace osd
