#pragma once
// Sampling: logits -> processed probabilities -> token, seeded per request.
//
// processed_probs() applies, per row, temperature, then top-k, then top-p (the smallest set of
// most likely tokens whose mass reaches top_p), and renormalises; temperature 0 is greedy and
// yields the one-hot of the argmax. The rejection sampler reuses these processed p and q, so
// speculative sampling preserves exactly the distribution plain sampling draws from.
// Randomness comes from a RequestRng per request, drawn on the host: a request's tokens do not
// depend on which other requests share its batch, nor on the device.
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <random>
#include <string>
#include <vector>

namespace osd {

struct SamplingParams {
  double temperature = 1.0;  // 0: greedy (argmax)
  int64_t top_k = 0;         // 0: off
  double top_p = 1.0;        // 1: off; in (0, 1]
  uint64_t seed = 0;

  bool greedy() const { return temperature == 0.0; }
  std::string validate() const;  // empty when usable, else what is wrong
};

// Deterministic stream of uniforms in [0, 1) for one request (mt19937_64, 53-bit mantissa).
class RequestRng {
 public:
  explicit RequestRng(uint64_t seed = 0);
  double uniform();
  std::vector<double> uniforms(size_t n);

 private:
  std::mt19937_64 gen_;
};

// logits: [N, V] (any float dtype); params: N entries, or 1 applied to every row.
// Returns probs [N, V] float32; each row sums to 1 and is 0 outside its allowed set.
at::Tensor processed_probs(const at::Tensor& logits, const std::vector<SamplingParams>& params);

// probs: [N, V] float32 rows (need not be normalised, must have positive mass);
// uniforms: [N] float64 in [0, 1). Inverse-CDF draw: returns tokens [N] int64 on probs' device.
// A token with probability 0 is never returned.
at::Tensor sample_from_probs(const at::Tensor& probs, const at::Tensor& uniforms);

// Convenience for one step of plain decoding: processed probs, one draw per row.
// logits: [N, V]; rngs: N generators. Returns tokens [N] int64 on the CPU.
std::vector<int64_t> sample_tokens(const at::Tensor& logits,
                                   const std::vector<SamplingParams>& params,
                                   std::vector<RequestRng*> rngs);

}  // namespace osd
