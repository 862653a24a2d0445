#pragma once
// Include torch before Catch: glog (pulled in by torch) defines CHECK and would silently replace
// Catch's CHECK if it came second.
#include <torch/torch.h>
#include <catch2/catch.hpp>

#include "models/error.hpp"

namespace osd::test {

// Largest |a - b| as a double.
inline double max_abs_diff(const at::Tensor& a, const at::Tensor& b) {
  return (a.to(torch::kFloat64) - b.to(torch::kFloat64)).abs().max().item<double>();
}

// Random token ids [B, T] in [0, vocab).
inline at::Tensor random_tokens(int64_t B, int64_t T, int64_t vocab, uint64_t seed) {
  auto gen = at::detail::createCPUGenerator(seed);
  return torch::randint(0, vocab, {B, T}, gen, torch::kInt64);
}

}  // namespace osd::test
