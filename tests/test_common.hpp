#pragma once
// Include torch before Catch: glog (pulled in by torch) defines CHECK and would silently replace
// Catch's CHECK if it came second.
#include <torch/torch.h>
#include <catch2/catch.hpp>

#include <unistd.h>

#include <fstream>
#include <string>

#include "models/core/config.hpp"
#include "models/common/error.hpp"
#include "models/common/files.hpp"

namespace osd::test {

// A path under $TMPDIR that is unique to this test process.
inline std::string temp_path(const std::string& name) {
  return files::temp_dir() + "/osd-test-" + std::to_string(getpid()) + "-" + name;
}

// Writes text to temp_path(name) and returns the path.
inline std::string write_temp_file(const std::string& name, const std::string& text) {
  const auto path = temp_path(name);
  std::ofstream(path) << text;
  return path;
}

// A small byte-level model shape for training tests: vocab 256, 2 heads (MHA), MLP 2 x dim,
// 256 positions.
inline ModelConfig byte_model_config(int64_t dim, int64_t layers) {
  ModelConfig c;
  c.vocab_size = 256;
  c.hidden_size = dim;
  c.intermediate_size = dim * 2;
  c.num_layers = layers;
  c.num_heads = 2;
  c.num_kv_heads = 2;
  c.max_position_embeddings = 256;
  return c.finalize();
}

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
