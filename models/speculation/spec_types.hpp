#pragma once
// The data that flows between the roles of speculative decoding (vLLM's split):
//
//   proposer (draft)  --Proposals-->  scorer (target, one batched pass)  --Scores-->
//   rejection sampler --Verdicts-->   both sides roll their KV caches back
//
// Terms, defined once:
//   draft tokens     the k tokens the draft proposes for a sequence in one round
//   accepted tokens  the leading draft tokens the rule keeps (0..k)
//   recovered token  the token drawn from norm(max(0, p - q)) at the first rejection
//   bonus token      the token drawn from p at position k + 1 when all k were accepted
// Every round emits accepted + 1 tokens (the +1 is the recovered or the bonus token).
#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "models/speculation/sampling.hpp"

namespace osd {

class StreamMark;  // models/core/device_stream.hpp

using SeqId = int64_t;

struct GenerationRequest {
  std::vector<int64_t> prompt;          // token ids, at least one
  SamplingParams sampling;
  int64_t max_new_tokens = 64;
  std::vector<int64_t> eos_ids;         // generation stops after emitting one of these
  std::vector<std::string> stop;        // stop strings; may span tokens (needs a detokenizer)
};

enum class FinishReason { none, length, eos, stop, cancelled, error };
const char* finish_reason_name(FinishReason r);

// Per-request statistics, with vLLM's meanings.
struct SpecStats {
  int64_t num_drafts = 0;                 // rounds in which the draft proposed >= 1 token
  int64_t num_draft_tokens = 0;           // tokens proposed, summed over rounds
  int64_t num_accepted_tokens = 0;        // draft tokens accepted, summed over rounds
  int64_t num_rounds = 0;                 // target passes (k = 0 rounds included)
  int64_t num_rejected_drafts = 0;        // draft rounds that ended in a rejection (accepted < k)
  std::vector<int64_t> accepted_per_pos;  // [i]: rounds whose draft token i was accepted
  // Mean tokens emitted per draft round: 1 + accepted / drafts (vLLM's mean acceptance length).
  double mean_accepted_length() const {
    return num_drafts ? 1.0 + double(num_accepted_tokens) / double(num_drafts) : 0.0;
  }
  // Per-token acceptance alpha of the geometric model (the paper's alpha): the maximum-likelihood
  // estimate accepted / (accepted + rejections) from truncated runs.
  double alpha() const {
    const double d = double(num_accepted_tokens + num_rejected_drafts);
    return d > 0 ? double(num_accepted_tokens) / d : 0.0;
  }
  double acceptance_rate() const {
    return num_draft_tokens ? double(num_accepted_tokens) / double(num_draft_tokens) : 0.0;
  }
  void merge(const SpecStats& o);
  void record(const struct Verdict& v);  // one round of this request
};

// Output of the proposer for a batch of sequences (rows), right-padded to K = max k.
struct Proposals {
  std::vector<SeqId> ids;       // row -> sequence
  std::vector<int64_t> k;       // row -> number of draft tokens (0..K)
  at::Tensor tokens;            // [B, K] int64 (padding: 0)
  at::Tensor probs;             // [B, K, V] float32: the draft's processed q at each draft token
  std::vector<std::vector<int64_t>> host_tokens;  // row -> its k draft tokens, on the host
  double seconds = 0;           // wall time of the proposal (for the cost ratio c)
  double start_us = 0;          // steady-clock microseconds when the proposal started (traces)
  int64_t draft_steps = 0;      // draft forward passes it took (a catch-up prefill counts as one)
  int64_t catch_up_tokens = 0;  // tokens its catch-up prefill ran (rows far behind; 0: none)
  double catch_up_seconds = 0;  // ... and that prefill's share of `seconds`
  int64_t draft_version = 0;    // version of the draft weights that proposed
  // On CUDA: the point of the drafter's stream after which tokens and probs are complete; the
  // verifier's stream waits for it on the GPU (null on the CPU; not serialized: a remote drafter's
  // tensors arrive complete).
  std::shared_ptr<const StreamMark> ready;

  // The proposal of a subset of its rows (in the given order).
  Proposals select(const std::vector<size_t>& rows) const;
  // No draft tokens for these rows (target-only rounds): tokens [B, 0], probs [B, 0, vocab].
  static Proposals none(std::vector<SeqId> ids, std::vector<int64_t> k, int64_t vocab, c10::Device device);
};

// What a drafter must learn of a sequence before it drafts for it (the verifier actor sends it
// with a proposal request): the first `known` tokens it holds are right and `tail` follows them.
// A sequence the drafter has not seen: known = 0, tail = the whole sequence so far.
struct DraftSync {
  SeqId id = 0;
  int64_t known = 0;
  std::vector<int64_t> tail;
  SamplingParams params;
};

// What the rejection sampler decided for one sequence in one round.
struct Verdict {
  SeqId id = 0;
  int64_t k = 0;                    // draft tokens proposed
  int64_t accepted = 0;             // leading draft tokens accepted
  std::vector<int64_t> emitted;     // accepted draft tokens + the recovered/bonus token
};

}  // namespace osd
