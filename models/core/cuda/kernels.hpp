#pragma once
// Fused CUDA kernels for the decode step (models/core/cuda/kernels.cu). A graphed decode step at
// batch 1 is bound by its kernel count, not by memory (docs/GPU.md): these put the elementwise
// work of a layer into four kernels instead of ~14 (residual add + RMSNorm; RoPE on q and k +
// the KV-cache write; attention of a few query tokens over the cache, read in place; SiLU * up),
// and at one row a GEMV takes the norm or SiLU * up into its input and the residual add into its
// epilogue (six kernels a layer in all).
//
// Plain pointers and no torch or CUDA headers, so nvcc compiles the .cu alone and fast; callers
// go through models/core/fused_ops.hpp, which checks shapes and falls back to libtorch ops. Inputs
// are contiguous, row-major, in one dtype; every launcher queues on `stream` (a cudaStream_t)
// and returns 0 or a cudaError_t code (error_string names it).
#include <cstdint>

namespace osd::cuda_kernels {

enum class Dtype : int { f32 = 0, f16 = 1, bf16 = 2 };

// sum = x + residual (rounded to the dtype; skipped when residual is null: sum = x), then
// out = weight * round(sum * rsqrt(mean(sum^2) + eps)) in HF LlamaRMSNorm's roundings.
// x, residual, sum_out, out: [rows, hidden], 16-byte aligned; weight: [hidden]. sum_out may be
// null when residual is. norm_supported: hidden % 8 == 0, at most 32768.
bool norm_supported(int64_t hidden);
int add_rms_norm(Dtype dtype, const void* x, const void* residual, void* sum_out,
                 const void* weight, void* out, int64_t rows, int64_t hidden, float eps,
                 void* stream);

// gate_up: [rows, 2 * inter] (gate columns first) -> out [rows, inter] = silu(gate) * up.
int silu_mul(Dtype dtype, const void* gate_up, void* out, int64_t rows, int64_t inter,
             void* stream);

// RoPE on the q and k heads of fused qkv rows, q to q_out, k and v into the cache.
struct RopeCacheArgs {
  const void* qkv = nullptr;           // [B * T, (H + 2 Hkv) * D]
  const float* cos = nullptr;          // [P, D] fp32 (RopeTables::cos)
  const float* sin_signed = nullptr;   // [P, D] fp32 (RopeTables::sin_signed)
  const int64_t* positions = nullptr;  // [B * T]: each token's position in its sequence
  const int64_t* slots = nullptr;      // [B]: each row's cache slot
  void* q_out = nullptr;               // [B * T, H, D]
  void* k_cache = nullptr;             // [slots, max_len, Hkv, D]
  void* v_cache = nullptr;
  int64_t rows = 0;    // B * T
  int64_t tokens = 1;  // T
  int64_t max_len = 0;
  int64_t max_positions = 0;  // P: positions past it use row P - 1 (as the libtorch path)
  int64_t heads = 0, kv_heads = 0, head_dim = 0;
};
int rope_cache_write(Dtype dtype, const RopeCacheArgs& args, void* stream);

// Attention of each query token over its slot's cached positions 0 .. position (causal), read
// from the cache in place (no gather), GQA by head index. q, out: [B * T, H, D].
struct AttentionArgs {
  const void* q = nullptr;
  const void* k_cache = nullptr;  // [slots, max_len, Hkv, D]
  const void* v_cache = nullptr;
  const int64_t* positions = nullptr;  // [B * T]
  const int64_t* slots = nullptr;      // [B]
  void* out = nullptr;
  int64_t rows = 0, tokens = 1, max_len = 0;
  int64_t span = 0;  // at most this many keys per query (shared-memory bound)
  int64_t heads = 0, kv_heads = 0, head_dim = 0;
  float scale = 1.0f;
};
int decode_attention(Dtype dtype, const AttentionArgs& args, void* stream);
// Whether decode_attention takes this head size and span (vector loads need head_dim % 8 == 0;
// the scores of a query live in 48 KB of shared memory with the partial outputs: span <= ~10k).
// The cache must be 16-byte aligned.
bool attention_supported(int64_t head_dim, int64_t span);

// A GEMV for a few rows (the decode step's linear layers at batch 1), with the work around it
// fused: y = round(in(x) W^T + bias), then out = round(residual + y) when residual is given.
// in(x) is x itself, rms_norm(x) * norm_weight (HF's roundings; norm_weight set), or
// silu(gate) * up of x = [gate | up] (silu_input; x then has 2K columns). W: [N, K] row-major;
// x, residual, out: [M, ...] rows. out_float: out is float32 (y rounded to the dtype first, as
// `matmul(...).to(float32)`). gemv_supported: M <= 8, K % 8 == 0, the staged input fits shared
// memory; all pointers 16-byte aligned.
struct GemvArgs {
  const void* x = nullptr;
  const void* weight = nullptr;       // [N, K]
  const void* bias = nullptr;         // [N] or null
  const void* norm_weight = nullptr;  // [K] or null
  const void* residual = nullptr;     // [M, N] or null
  void* out = nullptr;                // [M, N]
  int64_t rows = 0, n = 0, k = 0;     // M, N, K
  float eps = 1e-6f;
  bool silu_input = false;
  bool out_float = false;
};
bool gemv_supported(Dtype dtype, int64_t rows, int64_t k);
// Whether gemv() computes these rows on tensor cores (bf16 / fp16, 2 to 5 rows, K % 32 == 0,
// compute capability 8.0+; OSD_GEMV_MMA=0: never; OSD_GEMV_MMA_MAX_ROWS: up to 2..8 rows).
bool gemv_mma_applies(Dtype dtype, int64_t rows, int64_t k);
int gemv(Dtype dtype, const GemvArgs& args, void* stream);

// Programmatic dependent launch (Hopper, CUDA 12.3+): each kernel here may start while the
// kernel before it on the stream finishes, and streams its weights in meanwhile (the GEMV). On by
// default where the device takes it; OSD_PDL=0 or set_programmatic_launch(false) turns it off.
// programmatic_launch(): whether launches on the current device use it.
void set_programmatic_launch(bool on);
bool programmatic_launch();

const char* error_string(int code);

}  // namespace osd::cuda_kernels
