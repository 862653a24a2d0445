#pragma once
// Include torch before Catch: glog (pulled in by torch) defines CHECK and would silently replace
// Catch's CHECK if it came second.
#include <torch/torch.h>
#include <catch2/catch.hpp>

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>

#include "models/core/config.hpp"
#include "models/common/error.hpp"
#include "models/common/files.hpp"

namespace osd::test {

// ---- skipping a test that cannot run here ------------------------------------------------------
// A test that cannot run on this machine (no CUDA, no CUDA graphs in this build, no green
// contexts, no fused kernels) must be reported as skipped, never as passed. CTest runs each test
// case as its own process with `--skip-exit-code 77` and the property SKIP_RETURN_CODE 77
// (CMakeLists.txt): OSD_SKIP prints the reason and ends the process with that code, so CTest
// counts the test as Skipped. Run directly (no --skip-exit-code), OSD_SKIP warns
// ("SKIPPED: ...") and returns from the test case. A test that already failed an assertion is
// not turned into a skip: OSD_SKIP then only warns, and the failure stands.

// The exit code that marks a skip (main.cpp sets it from --skip-exit-code; 0: warn instead).
inline int& skip_exit_code() {
  static int code = 0;
  return code;
}
// Assertions that failed so far in this process (counted by main.cpp's listener).
inline int& failed_assertions() {
  static int failed = 0;
  return failed;
}
inline void skip_test(const std::string& reason) {
  if (skip_exit_code() != 0 && failed_assertions() == 0) {
    std::cout << "SKIPPED: " << reason << std::endl;
    std::fflush(nullptr);
    std::_Exit(skip_exit_code());
  }
  WARN("SKIPPED: " << reason);
}


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

// Skips the current test case (see skip_test above); `reason` may be a stream expression.
#define OSD_SKIP(reason)                     \
  do {                                       \
    std::ostringstream osd_skip_reason_;     \
    osd_skip_reason_ << reason;              \
    osd::test::skip_test(osd_skip_reason_.str()); \
    return;                                  \
  } while (0)
