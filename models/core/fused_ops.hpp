#pragma once
// The decode step's elementwise work as fused CUDA kernels (models/core/cuda/kernels.hpp), for the
// transformer. A build has them when CMake found a CUDA compiler next to a CUDA libtorch; they
// run on CUDA tensors in float32, float16 or bfloat16 unless switched off (OSD_KERNELS=torch, or
// set_enabled(false)). Callers ask applies() and otherwise use the libtorch ops, which compute
// the same values up to rounding (the kernels round where Hugging Face's Llama does).
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <utility>

namespace osd::fused {

bool built();               // this build has the kernels
bool enabled();             // process-wide switch; initially off only with OSD_KERNELS=torch
void set_enabled(bool on);  // for comparisons and tests; not for use while steps run
bool applies(const at::Tensor& like);  // built, enabled, grad mode off, CUDA, f32/f16/bf16
// Programmatic dependent launch of the kernels (Hopper): each starts while the one before it
// finishes. On by default where the current device takes it; OSD_PDL=0 turns it off. Like
// set_enabled: for comparisons and tests, not while steps run or graphs are captured.
void set_programmatic_launch(bool on);
bool programmatic_launch();  // whether launches on the current device use it

// Whether add_rms_norm takes this hidden size (a multiple of 8, at most 32768).
bool norm_applies(const at::Tensor& like, int64_t hidden);
// x, residual: [rows..., hidden] -> {x + residual, rms_norm(x + residual) * weight}; with
// residual undefined {x, rms_norm(x) * weight}. weight: [hidden].
std::pair<at::Tensor, at::Tensor> add_rms_norm(const at::Tensor& x, const at::Tensor& residual,
                                               const at::Tensor& weight, double eps);

// gate_up: [rows..., 2 * I] (gate first) -> silu(gate) * up: [rows..., I].
at::Tensor silu_mul(const at::Tensor& gate_up);

// One layer's cache and the rows being written to it.
struct CacheRows {
  at::Tensor positions;  // [B, T] int64: each new token's position
  at::Tensor slots;      // [B] int64: each row's slot
  at::Tensor keys;       // the layer's cache [num_slots, max_len, Hkv, D]
  at::Tensor values;
};

// qkv: [B, T, (H + 2 Hkv) * D] -> q [B, T, H, D] rotated by RoPE; the rotated k and v are written
// at each token's position in its slot. cos, sin_signed: RopeTables (fp32 [P, D]).
at::Tensor rope_cache_write(const at::Tensor& qkv, const at::Tensor& cos,
                            const at::Tensor& sin_signed, const CacheRows& rows, int64_t heads);

// Whether attention() takes these shapes: few query tokens (T <= kMaxAttentionTokens), a head
// size the kernel handles, and a span whose scores fit its shared memory.
constexpr int64_t kMaxAttentionTokens = 16;
bool attention_applies(const at::Tensor& like, int64_t tokens, int64_t head_dim, int64_t span);
// q: [B, T, H, D] -> [B, T, H * D]: each token attends causally to positions 0 .. its own of its
// slot (at most `span`), read from the cache in place. scale: usually 1 / sqrt(D).
at::Tensor attention(const at::Tensor& q, const CacheRows& rows, int64_t span, double scale);

// A linear layer for a few rows (M <= 8: decode steps at small batch) as one GEMV kernel with the
// work around it fused: y = in(x) W^T + bias, then residual + y when a residual is given.
struct LinearInput {
  at::Tensor norm_weight;  // in(x) = rms_norm(x) * norm_weight (HF's roundings), or undefined
  double eps = 1e-6;
  bool silu_input = false;  // in(x) = silu(gate) * up of x = [gate | up] (x has 2K columns)
};
// Whether linear() takes `rows` rows of `k` inputs in x's dtype.
bool linear_applies(const at::Tensor& like, int64_t rows, int64_t k);
// Whether the GEMV is the better choice for `rows` rows through this weight: at most
// OSD_GEMV_MAX_ELEMENTS weight elements (default 8M), and one row (OSD_GEMV_MAX_ROWS, default 1)
// or 2-5 rows where its tensor-core form applies (bf16 / fp16, K % 32 == 0, sm_80+;
// cuda_kernels::gemv_mma_applies). Measured (docs/results/history/NOTEBOOK.md): one row faster
// than cuBLAS up to the 100M shape, slower for the 1.1B shape's MLP matrices (H200); 5 rows on
// tensor cores 0.774 ms against cuBLAS's 0.842 for the 119M target's verification step (H100).
bool gemv_preferred(const at::Tensor& weight, int64_t rows);
// x: [rows..., K] (or [rows..., 2K] with silu_input); weight [N, K]; bias [N] or undefined;
// residual [rows..., N] or undefined. Returns [rows..., N] in x's dtype, or float32 with
// out_float (rounded through x's dtype first, as matmul(...).to(float32)).
at::Tensor linear(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                  const LinearInput& input, const at::Tensor& residual, bool out_float = false);

}  // namespace osd::fused
