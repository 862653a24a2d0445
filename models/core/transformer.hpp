#pragma once
// A Llama-family decoder-only transformer in libtorch (gpt-fast's model.py, in C++).
//
//   tokens -> embed -> num_layers x [x + attn(rms_norm(x)); x + mlp(rms_norm(x))] -> norm -> lm_head
//
// One forward() serves every mode the engine needs, through the KV cache:
//   prefill    tokens [B, prompt_len]           (num_new gives each row's real length)
//   decode     tokens [B, 1]
//   score      tokens [B, k + 1]                (the verifier: last token + k proposals)
// Rows continue the sequences held in cache slots; each row's new tokens sit at positions
// length(slot) .. length(slot) + num_new - 1 and see every cached position before them.
// Q/K/V and gate/up projections are fused (one GEMM each); checkpoints/ splits them for HF.
#include <torch/nn/module.h>

#include <cstdint>
#include <vector>

#include "models/core/config.hpp"
#include "models/core/kv_cache.hpp"
#include "models/core/rope.hpp"

namespace osd {

struct LayerWeights {
  at::Tensor attn_norm;   // [hidden]
  at::Tensor wqkv;        // [q_dim + 2 * kv_dim, hidden]
  at::Tensor bqkv;        // [q_dim + 2 * kv_dim] or undefined
  at::Tensor wo;          // [hidden, q_dim]
  at::Tensor bo;          // [hidden] or undefined
  at::Tensor mlp_norm;    // [hidden]
  at::Tensor w_gate_up;   // [2 * intermediate, hidden]  (gate rows first)
  at::Tensor b_gate_up;   // [2 * intermediate] or undefined
  at::Tensor w_down;      // [hidden, intermediate]
  at::Tensor b_down;      // [hidden] or undefined
};

class Transformer : public torch::nn::Module {
 public:
  // Random initialisation as HF does (normal(0, 0.02), norms 1, biases 0), seeded, on the CPU
  // in float32; then moved to `device` and config.dtype. Throws osd::Error on a bad config.
  explicit Transformer(const ModelConfig& config, uint64_t seed = 0,
                       c10::Device device = c10::Device(c10::kCPU));
  // Parameters allocated on `device` in the config's dtype and left uninitialised: a checkpoint
  // loader fills them tensor by tensor, so the weights never exist twice.
  struct Uninitialized {};
  Transformer(const ModelConfig& config, c10::Device device, Uninitialized);

  const ModelConfig& config() const { return config_; }
  c10::Device device() const { return device_; }
  c10::ScalarType dtype() const;

  // tokens: [B, T] int64 (CPU or the model's device); slots: B distinct allocated slots;
  // num_new: B counts in [1, T] of real tokens per row (empty: all T); rows are right-padded.
  // Returns logits [B, T, vocab] float32 (positions past num_new are garbage), or with
  // last_only [B, 1, vocab] at each row's last real token, or with last_n > 0 (and not
  // last_only) [B, last_n, vocab] at the last last_n of the T real positions. Appends num_new[i]
  // positions to slots[i]. Throws osd::Error, leaving the cache unchanged, on bad shapes, dtypes,
  // token ids, slots, or positions past max_position_embeddings or the cache's max_len.
  at::Tensor forward(const at::Tensor& tokens, const std::vector<int64_t>& slots, KVCache& cache,
                     const std::vector<int64_t>& num_new = {}, bool last_only = false,
                     int64_t last_n = 0);

  // Allocates a cache slot and runs `tokens` into it (none: an empty slot). On failure the slot
  // is freed and the error rethrown, so the cache is unchanged. Returns the slot.
  // With logits: *logits = the prefill's logits at its last logit_positions tokens (all of them
  // when logit_positions is 0 or more than there are), [n, vocab] float32.
  int64_t prefill_slot(KVCache& cache, const std::vector<int64_t>& tokens,
                       at::Tensor* logits = nullptr, int64_t logit_positions = 0);
  // Runs a prefill of every padded prompt length the cache can hold (multiples of 64) on a
  // scratch slot, and with full_forward a forward_full of each: the attention shapes serving
  // meets. PyTorch keeps cuDNN's attention plans per thread and each actor is a thread, so an
  // actor that meets a new shape mid-serving builds its plan then (57-60 ms on an H100);
  // an actor calls this on its own thread before it serves. Leaves the cache as it found it.
  // Returns the forward passes run.
  int64_t warm_attention_plans(KVCache& cache, bool full_forward);

  // One step of T tokens per row from device tensors only, with no host synchronisation and no
  // host bookkeeping, so a CUDA graph can capture it (models/core/decode_graph.hpp): tokens [B, T],
  // lens [B] (each slot's current length), slots [B] (int64, on the model's device). Attention
  // reads the first `span` positions of each slot (masked; 0: the whole cache), so every
  // lens[i] + T must be <= span. Writes positions lens[i] .. lens[i] + T - 1 of slots[i] but
  // does not commit them: the caller calls cache.commit. Returns logits [B, T, vocab] fp32.
  at::Tensor step_static(const at::Tensor& tokens, const at::Tensor& lens, const at::Tensor& slots,
                         KVCache& cache, int64_t span = 0);

  // Full causal forward without a cache (training, references). tokens: [B, T] -> [B, T, vocab].
  at::Tensor forward_full(const at::Tensor& tokens);

  // A cache shaped for this model, on its device and dtype.
  KVCache make_cache(int64_t num_slots, int64_t max_len) const;

  // A deep copy of the weights as a new model on `device` in `dtype` (gradients off).
  std::shared_ptr<Transformer> clone(c10::Device device, c10::ScalarType dtype) const;
  // Copies another model's weights (same shape) into this one.
  void copy_weights_from(const Transformer& other);

  // Moves weights and rope tables; keeps config_.dtype in step.
  void to_device(c10::Device device, c10::ScalarType dtype);

  std::vector<LayerWeights>& layers() { return layers_; }
  at::Tensor& embed_tokens() { return embed_; }
  at::Tensor& final_norm() { return norm_; }
  at::Tensor& lm_head() { return config_.tie_word_embeddings ? embed_ : lm_head_; }

 private:
  // Registers every parameter, made by the given factories (shape -> tensor, n -> tensor).
  template <typename Normal, typename Ones, typename Zeros>
  void build(Normal normal, Ones ones, Zeros zeros);
  // x: [B, T, hidden]; cos/sin: [B, T, 1, head_dim]; mask: [B, 1, T, S], bool (true = attend)
  // into run_layers, which hands attention an additive bias in x's dtype where SDPA takes it.
  // With a cache, k/v are written at each row's positions of its slot (by the fused kernel, or
  // at flat_index) and attention reads [0, S).
  struct CacheWrite {
    KVCache* cache = nullptr;
    at::Tensor positions;          // [B, T] int64
    at::Tensor slots;              // [B] int64, on the device
    bool fused = false;            // RoPE + cache write by the fused kernel (models/fused_ops)
    bool fused_attention = false;  // and attention too (few tokens, a span it takes)
    at::Tensor flat_index;         // [B * T] int64: slot * max_len + position (unfused writes only)
    at::Tensor read_slots;  // [B] int64, or undefined when slots are one contiguous run
    int64_t first_slot = 0;
    int64_t span = 0;       // S: positions attention reads per row
  };
  // Writes rows' T new positions (positions [B, T]) of `slots` ([B] int64, on the device) and
  // reads their first `span` positions (through a gather, unless the fused attention applies).
  static CacheWrite cache_write(KVCache& cache, const at::Tensor& slots,
                                const at::Tensor& positions, int64_t span);
  // x [B, T, hidden] -> the attention block's output (after wo); attend() is the part from qkv
  // [B, T, (H + 2Hkv) D] to the heads' output [B, T, H * D] (RoPE, cache write, attention).
  at::Tensor attention(int64_t layer, const at::Tensor& x, const at::Tensor& cos,
                       const at::Tensor& sin, const at::Tensor& mask, const CacheWrite* cw);
  at::Tensor attend(int64_t layer, const at::Tensor& qkv, const at::Tensor& cos,
                    const at::Tensor& sin, const at::Tensor& mask, const CacheWrite* cw);
  // h [.., hidden] (after the final norm) -> fp32 logits [.., vocab].
  at::Tensor logits(const at::Tensor& h);
  at::Tensor mlp(int64_t layer, const at::Tensor& x);
  at::Tensor run_layers(at::Tensor x, const at::Tensor& positions, const at::Tensor& mask,
                        const CacheWrite* cw);
  at::Tensor check_tokens(const at::Tensor& tokens, const char* what) const;

  ModelConfig config_;
  c10::Device device_;
  at::Tensor embed_;     // [vocab, hidden]
  at::Tensor norm_;      // [hidden]
  at::Tensor lm_head_;   // [vocab, hidden], undefined when tied
  std::vector<LayerWeights> layers_;
  RopeTables rope_;
};

// x: [..., hidden] -> same shape; computed in float32 as HF's LlamaRMSNorm.
at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& weight, double eps);

}  // namespace osd
