#pragma once
// Sampling: logits -> processed probabilities -> token, seeded per request.
//
// processed_probs() applies, per row, temperature, then top-k, then top-p (the smallest set of
// most likely tokens whose mass reaches top_p), and renormalises; temperature 0 is greedy and
// yields the one-hot of the argmax. The rejection sampler reuses these processed p and q, so
// speculative sampling preserves exactly the distribution plain sampling draws from.
// Randomness in speculation is counter-based: the uniform of a request's draw at a position is a
// pure function of (seed, position, purpose) (position_uniform), so a request's tokens depend
// neither on which other requests share its batch, nor on how its tokens were grouped into rounds,
// nor on the device. RequestRng is a plain sequential stream for code outside speculation.
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <random>
#include <string>
#include <vector>

namespace osd {

// How speculative sampling draws a sampled (temperature > 0) request's tokens.
//   rejection: the exact p/q rule (Leviathan et al.): the highest acceptance; the tokens follow the
//              target's distribution, but which tokens a seed gives depends on where the scheduler
//              drafted (k per round), so the same seed can give another text under another load.
//   coupled:   the draft and the target draw each position from the same uniform by inverse CDF
//              (the draft's token is accepted iff it equals the target's own draw): the output is
//              token for token the target-only sampling of the same seed, whatever k, at the cost
//              of acceptance (P(same draw) <= sum_x min(p, q)).
// Greedy requests are the same either way.
enum class SamplingMode : int64_t { rejection = 0, coupled = 1 };

struct SamplingParams {
  double temperature = 1.0;  // 0: greedy (argmax)
  int64_t top_k = 0;         // 0: off
  double top_p = 1.0;        // 1: off; in (0, 1]
  uint64_t seed = 0;
  SamplingMode mode = SamplingMode::coupled;

  bool greedy() const { return temperature == 0.0; }
  std::string validate() const;  // empty when usable, else what is wrong
};

// What a counter-based draw is for: the target's draw of a token, the accept test of a draft
// token, the draft's own draw (rejection mode; coupled mode draws the draft with `target`).
enum class DrawPurpose : uint64_t { target = 1, accept = 2, draft = 3 };

// The uniform in [0, 1) of a request's draw at a token position (the index of the token in the
// whole sequence, prompt included): a pure function of its arguments (a splitmix64 hash).
double position_uniform(uint64_t seed, int64_t position, DrawPurpose purpose);

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
