// Fused decode-step kernels: see kernels.hpp. Math in fp32; values are rounded to the storage
// dtype where Hugging Face's Llama rounds them, so bf16 results follow the reference's roundings.
#include "models/core/cuda/kernels.hpp"

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string>
#include <type_traits>

namespace osd::cuda_kernels {
namespace {

template <typename T>
struct Num;
template <>
struct Num<float> {
  static __device__ __forceinline__ float load(float v) { return v; }
  static __device__ __forceinline__ float store(float v) { return v; }
};
template <>
struct Num<__half> {
  static __device__ __forceinline__ float load(__half v) { return __half2float(v); }
  static __device__ __forceinline__ __half store(float v) { return __float2half_rn(v); }
};
template <>
struct Num<__nv_bfloat16> {
  static __device__ __forceinline__ float load(__nv_bfloat16 v) { return __bfloat162float(v); }
  static __device__ __forceinline__ __nv_bfloat16 store(float v) { return __float2bfloat16_rn(v); }
};

template <typename T>
__device__ __forceinline__ float f(T v) {
  return Num<T>::load(v);
}
template <typename T>
__device__ __forceinline__ T to(float v) {
  return Num<T>::store(v);
}
// v rounded to T and back: where the reference stores an intermediate in the model's dtype.
template <typename T>
__device__ __forceinline__ float rnd(float v) {
  return f<T>(to<T>(v));
}

// Eight consecutive elements, loaded and stored as one aligned access (16 bytes for the 2-byte
// types, 32 for float): rows of hidden or head_dim % 8 == 0 elements start aligned.
template <typename T>
struct alignas(sizeof(T) * 8) Vec8 {
  T e[8];
};

__device__ __forceinline__ float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ float warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Sum (or max) over the block, returned to every thread. blockDim.x: a multiple of 32, <= 1024;
// scratch: 32 floats of shared memory. Ends with a barrier, so shared writes before it are seen.
template <bool kMax>
__device__ float block_reduce(float v, float* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  v = kMax ? warp_max(v) : warp_sum(v);
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  float r = lane < warps ? scratch[lane] : (kMax ? -INFINITY : 0.0f);
  r = kMax ? warp_max(r) : warp_sum(r);
  __syncthreads();  // scratch may be reused
  return r;
}

// ---- programmatic dependent launch (Hopper) --------------------------------------------------
// Launched with PDL (launch() below), a kernel's blocks start while the kernel before it on the
// stream still runs. Before wait_for_producer() a kernel may only read what no kernel writes (the
// weights); after it, the producer's writes are visible. allow_consumer_launch() then lets the
// next PDL kernel start early, so it can stream its weights in while this one works. Without the
// launch attribute, or below sm_90, both are no-ops.
__device__ __forceinline__ void wait_for_producer() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}
__device__ __forceinline__ void allow_consumer_launch() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}
__device__ __forceinline__ void start_after_producer() {
  wait_for_producer();
  allow_consumer_launch();
}

// ---- residual add + RMSNorm: one block per row, chunks of 8 elements per thread ----------------
// Each thread keeps its chunks in registers between the sum of squares and the output.
constexpr int kNormChunks = 4;  // chunks per thread: hidden <= 4 * 8 * 1024

template <typename T>
__global__ void add_rms_norm_kernel(const T* x, const T* residual, T* sum_out, const T* weight,
                                    T* out, int64_t rows, int hidden, float eps) {
  __shared__ float scratch[32];
  start_after_producer();
  const int chunks = hidden / 8;
  const auto* w = reinterpret_cast<const Vec8<T>*>(weight);
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const auto* xr = reinterpret_cast<const Vec8<T>*>(x + row * hidden);
    const auto* rr = residual ? reinterpret_cast<const Vec8<T>*>(residual + row * hidden) : nullptr;
    auto* sr = sum_out ? reinterpret_cast<Vec8<T>*>(sum_out + row * hidden) : nullptr;
    float h[kNormChunks][8];
    float squares = 0.0f;
#pragma unroll
    for (int k = 0; k < kNormChunks; ++k) {
      const int c = threadIdx.x + k * blockDim.x;
      if (c >= chunks) continue;
      const Vec8<T> xv = xr[c];
      if (rr) {
        const Vec8<T> rv = rr[c];
        Vec8<T> sv;
#pragma unroll
        for (int e = 0; e < 8; ++e) {
          sv.e[e] = to<T>(f<T>(xv.e[e]) + f<T>(rv.e[e]));  // the residual stream is stored in T
          h[k][e] = f<T>(sv.e[e]);
        }
        sr[c] = sv;
      } else {
#pragma unroll
        for (int e = 0; e < 8; ++e) h[k][e] = f<T>(xv.e[e]);
      }
#pragma unroll
      for (int e = 0; e < 8; ++e) squares += h[k][e] * h[k][e];
    }
    const float inv = rsqrtf(block_reduce<false>(squares, scratch) / hidden + eps);
    auto* o = reinterpret_cast<Vec8<T>*>(out + row * hidden);
#pragma unroll
    for (int k = 0; k < kNormChunks; ++k) {
      const int c = threadIdx.x + k * blockDim.x;
      if (c >= chunks) continue;
      const Vec8<T> wv = w[c];
      Vec8<T> ov;
#pragma unroll
      for (int e = 0; e < 8; ++e) ov.e[e] = to<T>(f<T>(wv.e[e]) * rnd<T>(h[k][e] * inv));  // HF
      o[c] = ov;
    }
  }
}

// ---- SiLU(gate) * up ----------------------------------------------------------------------------
template <typename T>
__global__ void silu_mul_kernel(const T* gate_up, T* out, int64_t rows, int64_t inter) {
  start_after_producer();
  const int64_t n = rows * inter;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t r = i / inter, c = i - r * inter;
    const float g = f<T>(gate_up[r * 2 * inter + c]), u = f<T>(gate_up[r * 2 * inter + inter + c]);
    out[i] = to<T>(rnd<T>(g / (1.0f + expf(-g))) * u);
  }
}

// ---- RoPE on q and k + KV-cache write: blockIdx.y walks rows, x covers the row's qkv ----------
template <typename T>
__global__ void rope_cache_kernel(RopeCacheArgs a) {
  start_after_producer();
  const int D = static_cast<int>(a.head_dim), half = D / 2;
  const int H = static_cast<int>(a.heads), Hkv = static_cast<int>(a.kv_heads);
  const int rotated = (H + Hkv) * D, total = (H + 2 * Hkv) * D;
  const int idx = blockIdx.x * blockDim.x + threadIdx.x;
  if (idx >= total) return;
  for (int64_t row = blockIdx.y; row < a.rows; row += gridDim.y) {
    const T* src = static_cast<const T*>(a.qkv) + row * total;
    const int64_t pos = a.positions[row];
    const int64_t cache_row = a.slots[row / a.tokens] * a.max_len + pos;  // of [slots * L, Hkv, D]
    if (idx < rotated) {
      const int head = idx / D, d = idx - head * D;
      const int64_t p = pos < a.max_positions ? pos : a.max_positions - 1;
      // HF: cos/sin cast to the dtype; q * cos + rotate_half(q) * sin, each product rounded.
      const float c = rnd<T>(a.cos[p * D + d]), s = rnd<T>(a.sin_signed[p * D + d]);
      const float x = f<T>(src[idx]);
      const float partner = f<T>(src[head * D + (d < half ? d + half : d - half)]);
      const T y = to<T>(rnd<T>(x * c) + rnd<T>(partner * s));
      if (head < H)
        static_cast<T*>(a.q_out)[row * H * D + idx] = y;
      else
        static_cast<T*>(a.k_cache)[(cache_row * Hkv + (head - H)) * D + d] = y;
    } else {
      static_cast<T*>(a.v_cache)[cache_row * Hkv * D + (idx - rotated)] = src[idx];
    }
  }
}

// ---- attention of few query tokens over the cache: one block per (query head, row) -----------
// Scores: a key per thread, its chunks of 8 loaded together. Output: head_dim / 8 threads share a
// key (8 output elements each) and groups of them take keys in turn, four keys in flight.
constexpr int kAttentionThreads = 256;
constexpr int kScoreBatch = 8;  // chunks of a key loaded before they are used

size_t attention_shared_bytes(int64_t head_dim, int64_t span) {
  return sizeof(float) * (head_dim + 32 + 8 * kAttentionThreads + span);
}
constexpr size_t kSharedLimit = 48 * 1024;  // shared memory a block gets without opting in

template <typename T>
__global__ void __launch_bounds__(kAttentionThreads) decode_attention_kernel(AttentionArgs a) {
  extern __shared__ float smem[];
  const int D = static_cast<int>(a.head_dim), H = static_cast<int>(a.heads), chunks = D / 8;
  const int h = blockIdx.x, hk = h / (H / static_cast<int>(a.kv_heads));
  const int64_t row = blockIdx.y;
  float* qs = smem;                              // [D] the query, scaled
  float* scratch = qs + D;                       // [32]
  float* part = scratch + 32;                    // [groups, D] partial outputs
  float* scores = part + 8 * kAttentionThreads;  // [span]
  const T* q = static_cast<const T*>(a.q) + (row * H + h) * D;
  start_after_producer();
  for (int d = threadIdx.x; d < D; d += blockDim.x) qs[d] = f<T>(q[d]) * a.scale;
  __syncthreads();

  const int64_t keys = min(a.positions[row] + 1, a.span);
  const int64_t stride = a.kv_heads * D;  // elements between positions
  const int64_t base = a.slots[row / a.tokens] * a.max_len * stride + static_cast<int64_t>(hk) * D;
  const T* kb = static_cast<const T*>(a.k_cache) + base;
  const T* vb = static_cast<const T*>(a.v_cache) + base;

  float local_max = -INFINITY;
  for (int64_t j = threadIdx.x; j < keys; j += blockDim.x) {
    const auto* kj = reinterpret_cast<const Vec8<T>*>(kb + j * stride);
    float dot = 0.0f;
    for (int c0 = 0; c0 < chunks; c0 += kScoreBatch) {
      Vec8<T> raw[kScoreBatch];
#pragma unroll
      for (int c = 0; c < kScoreBatch; ++c)
        if (c0 + c < chunks) raw[c] = kj[c0 + c];
#pragma unroll
      for (int c = 0; c < kScoreBatch; ++c) {
        if (c0 + c >= chunks) break;
#pragma unroll
        for (int e = 0; e < 8; ++e) dot += qs[(c0 + c) * 8 + e] * f<T>(raw[c].e[e]);
      }
    }
    scores[j] = dot;
    local_max = fmaxf(local_max, dot);
  }
  const float m = block_reduce<true>(local_max, scratch);
  float local_sum = 0.0f;
  for (int64_t j = threadIdx.x; j < keys; j += blockDim.x) {
    const float p = expf(scores[j] - m);
    scores[j] = p;
    local_sum += p;
  }
  const float total = block_reduce<false>(local_sum, scratch);  // its barrier publishes scores

  const int groups = blockDim.x / chunks, g = threadIdx.x / chunks, c = threadIdx.x - g * chunks;
  if (g < groups) {
    float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    auto v_at = [&](int64_t j) { return reinterpret_cast<const Vec8<T>*>(vb + j * stride)[c]; };
    int64_t j = g;
    for (; j + 3 * groups < keys; j += 4 * groups) {
      Vec8<T> v[4];
#pragma unroll
      for (int u = 0; u < 4; ++u) v[u] = v_at(j + u * groups);
#pragma unroll
      for (int u = 0; u < 4; ++u) {
        const float p = scores[j + u * groups];
#pragma unroll
        for (int e = 0; e < 8; ++e) acc[e] += p * f<T>(v[u].e[e]);
      }
    }
    for (; j < keys; j += groups) {
      const Vec8<T> v = v_at(j);
      const float p = scores[j];
#pragma unroll
      for (int e = 0; e < 8; ++e) acc[e] += p * f<T>(v.e[e]);
    }
#pragma unroll
    for (int e = 0; e < 8; ++e) part[g * D + c * 8 + e] = acc[e];
  }
  __syncthreads();
  for (int d = threadIdx.x; d < D; d += blockDim.x) {
    float s = 0.0f;
    for (int k = 0; k < groups; ++k) s += part[k * D + d];
    static_cast<T*>(a.out)[(row * H + h) * D + d] = to<T>(s / total);
  }
}

// ---- GEMV for a few rows with its input transform and epilogue ----------------------------------
// A block of 8 warps stages in(x) for all M rows in shared memory (in the dtype, as the reference
// rounds it), then each warp computes `rows_per_warp` output features in turn: its lanes read the
// weight row 8 elements at a time (kGemvBatch loads in flight), accumulate M dot products, and
// reduce them across the warp. A warp's first batch of weights is loaded before the block waits
// for its producer (weights: nothing writes them), so under programmatic launch it streams in
// while the kernel before finishes (H100, docs/GPU.md: 100M step 0.374 -> 0.349 ms).
constexpr int kGemvThreads = 256, kGemvWarps = kGemvThreads / 32, kGemvMaxRows = 8;
constexpr int kGemvBatch = 8;  // chunks of 8 per lane loaded before use

// Stages in(x) for the M rows of a GEMV in shared memory `in` [M, K] (in the dtype, as the
// reference rounds it): RMSNorm by norm_weight, SiLU(gate) * up of x [M, 2K], or x as it is.
// Ends with a barrier.
template <typename T>
__device__ void stage_gemv_input(const GemvArgs& a, T* in, float* inv_rms) {
  const int M = static_cast<int>(a.rows), K = static_cast<int>(a.k), chunks = K / 8;
  const T* x = static_cast<const T*>(a.x);
  const int64_t x_cols = a.silu_input ? 2 * static_cast<int64_t>(K) : K;
  if (a.norm_weight) {  // one inverse RMS per input row, all rows reduced together
    float squares[kGemvMaxRows];
#pragma unroll
    for (int m = 0; m < kGemvMaxRows; ++m) {
      squares[m] = 0.0f;
      if (m >= M) continue;
      for (int c = threadIdx.x; c < chunks; c += blockDim.x) {
        const Vec8<T> v = reinterpret_cast<const Vec8<T>*>(x + m * x_cols)[c];
#pragma unroll
        for (int e = 0; e < 8; ++e) squares[m] += f<T>(v.e[e]) * f<T>(v.e[e]);
      }
    }
    // Each warp's sums per row, then one thread a row adds the warps' (two barriers in all,
    // where a block reduction per row took two each).
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    __shared__ float row_sums[kGemvMaxRows][kGemvWarps];
#pragma unroll
    for (int m = 0; m < kGemvMaxRows; ++m) {
      const float w = warp_sum(squares[m]);
      if (m < M && lane == 0) row_sums[m][warp] = w;
    }
    __syncthreads();
    if (threadIdx.x < M) {
      float total = 0.0f;
      for (int w = 0; w < warps; ++w) total += row_sums[threadIdx.x][w];
      inv_rms[threadIdx.x] = rsqrtf(total / K + a.eps);
    }
    __syncthreads();
  }
  for (int i = threadIdx.x; i < M * chunks; i += blockDim.x) {
    const int m = i / chunks, c = i - m * chunks;
    const Vec8<T> v = reinterpret_cast<const Vec8<T>*>(x + m * x_cols)[c];
    Vec8<T> o;
    if (a.silu_input) {
      const Vec8<T> u = reinterpret_cast<const Vec8<T>*>(x + m * x_cols + K)[c];
#pragma unroll
      for (int e = 0; e < 8; ++e) {
        const float g = f<T>(v.e[e]);
        o.e[e] = to<T>(rnd<T>(g / (1.0f + expf(-g))) * f<T>(u.e[e]));
      }
    } else if (a.norm_weight) {
      const Vec8<T> w = reinterpret_cast<const Vec8<T>*>(a.norm_weight)[c];
#pragma unroll
      for (int e = 0; e < 8; ++e) o.e[e] = to<T>(f<T>(w.e[e]) * rnd<T>(f<T>(v.e[e]) * inv_rms[m]));
    } else {
      o = v;
    }
    reinterpret_cast<Vec8<T>*>(in + m * K)[c] = o;
  }
  __syncthreads();
}

// The GEMV's epilogue for output feature n of input row m: bias, rounding, residual, store.
template <typename T>
__device__ __forceinline__ void store_gemv_output(const GemvArgs& a, int m, int64_t n, float sum) {
  float y = sum + (a.bias ? f<T>(static_cast<const T*>(a.bias)[n]) : 0.0f);
  y = rnd<T>(y);
  if (a.residual) y = rnd<T>(f<T>(static_cast<const T*>(a.residual)[m * a.n + n]) + y);
  if (a.out_float)
    static_cast<float*>(a.out)[m * a.n + n] = y;
  else
    static_cast<T*>(a.out)[m * a.n + n] = to<T>(y);
}

template <typename T>
__global__ void __launch_bounds__(kGemvThreads) gemv_kernel(GemvArgs a, int rows_per_warp) {
  extern __shared__ __align__(16) unsigned char gemv_smem[];
  T* in = reinterpret_cast<T*>(gemv_smem);  // [M, K]
  __shared__ float inv_rms[kGemvMaxRows];
  const int M = static_cast<int>(a.rows), K = static_cast<int>(a.k), chunks = K / 8;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int64_t first = (static_cast<int64_t>(blockIdx.x) * kGemvWarps + warp) * rows_per_warp;
  const T* weights = static_cast<const T*>(a.weight);  // [N, K]
  Vec8<T> wv[kGemvBatch];
  bool prefetched = false;
  if (first < a.n) {
#pragma unroll
    for (int b = 0; b < kGemvBatch; ++b)
      if (lane + 32 * b < chunks)
        wv[b] = reinterpret_cast<const Vec8<T>*>(weights + first * K)[lane + 32 * b];
    prefetched = true;
  }
  start_after_producer();

  stage_gemv_input<T>(a, in, inv_rms);

  for (int r = 0; r < rows_per_warp; ++r) {
    const int64_t n = first + r;
    if (n >= a.n) break;
    const auto* wrow = reinterpret_cast<const Vec8<T>*>(weights + n * K);
    float acc[kGemvMaxRows];
#pragma unroll
    for (int m = 0; m < kGemvMaxRows; ++m) acc[m] = 0.0f;
    for (int c0 = lane; c0 < chunks; c0 += 32 * kGemvBatch) {
      if (!prefetched) {
#pragma unroll
        for (int b = 0; b < kGemvBatch; ++b)
          if (c0 + 32 * b < chunks) wv[b] = wrow[c0 + 32 * b];
      }
      prefetched = false;
#pragma unroll
      for (int b = 0; b < kGemvBatch; ++b) {
        const int c = c0 + 32 * b;
        if (c < chunks) {
          float wf[8];
#pragma unroll
          for (int e = 0; e < 8; ++e) wf[e] = f<T>(wv[b].e[e]);
#pragma unroll
          for (int m = 0; m < kGemvMaxRows; ++m) {
            if (m < M) {
              const Vec8<T> iv = reinterpret_cast<const Vec8<T>*>(in + m * K)[c];
#pragma unroll
              for (int e = 0; e < 8; ++e) acc[m] += wf[e] * f<T>(iv.e[e]);
            }
          }
        }
      }
    }
#pragma unroll
    for (int m = 0; m < kGemvMaxRows; ++m) {
      if (m >= M) continue;
      const float sum = warp_sum(acc[m]);
      if (lane == 0) store_gemv_output<T>(a, m, n, sum);
    }
  }
}

// ---- GEMV of 2 to 8 rows on tensor cores (bf16 / fp16, sm_80+) ---------------------------------
// The loop above spends an fp32 FMA (and a conversion) per weight element and input row, so at 5
// rows (a verification of 4 drafts) it issued ~3.5x the instructions of one row and ran slower
// than cuBLAS (H100: 0.976 ms against 0.839 for the 119M target's 5-token step). Here a
// block computes 16 output features for all rows with mma.sync m16n8k16 (the rows are the mma's
// 8 columns, zero past M), its 8 warps splitting K in chunks of 32; lane (g, t) loads 16 bytes of
// weight rows g and g + 8 and of input row g at k = 32 c + 8 t, and the mma's k slots are
// permuted alike for both operands, so no shuffles are needed. Partial sums meet in shared memory.
constexpr int kMmaFeatures = 16, kMmaRows = 8, kMmaChunk = 32;

// d = a * b + d for one m16n8k16 tile, T's products accumulated in fp32 (sm_80+).
#define OSD_MMA_16816(TYPE)                                                   \
  asm volatile("mma.sync.aligned.m16n8k16.row.col.f32." TYPE "." TYPE         \
               ".f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n" \
               : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])               \
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]))
template <typename T>
__device__ __forceinline__ void mma_16816(float (&c)[4], const uint32_t (&a)[4],
                                          const uint32_t (&b)[2]) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  if constexpr (std::is_same_v<T, __nv_bfloat16>)
    OSD_MMA_16816("bf16");
  else
    OSD_MMA_16816("f16");
#endif
}
#undef OSD_MMA_16816

template <typename T>
__global__ void __launch_bounds__(kGemvThreads) gemv_mma_kernel(GemvArgs a) {
  extern __shared__ __align__(16) unsigned char gemv_smem[];
  T* in = reinterpret_cast<T*>(gemv_smem);  // [M, K]
  __shared__ float inv_rms[kGemvMaxRows];
  __shared__ float partial[kGemvWarps][32][4];
  const int M = static_cast<int>(a.rows), K = static_cast<int>(a.k), chunks = K / kMmaChunk;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
  const int64_t n0 = static_cast<int64_t>(blockIdx.x) * kMmaFeatures;
  const T* weights = static_cast<const T*>(a.weight);  // [N, K]
  const bool low = n0 + g < a.n, high = n0 + g + 8 < a.n;
  const uint4 zero = make_uint4(0, 0, 0, 0);
  auto weight_at = [&](int64_t n, bool ok, int c) {
    return ok ? *reinterpret_cast<const uint4*>(weights + n * K + c * kMmaChunk + 8 * t) : zero;
  };
  // The first chunk's weights before the wait (nothing writes weights).
  uint4 w_low = zero, w_high = zero;
  if (warp < chunks) {
    w_low = weight_at(n0 + g, low, warp);
    w_high = weight_at(n0 + g + 8, high, warp);
  }
  start_after_producer();
  stage_gemv_input<T>(a, in, inv_rms);

  float acc[4] = {0.0f, 0.0f, 0.0f, 0.0f};
  for (int c = warp; c < chunks; c += kGemvWarps) {
    if (c != warp) {
      w_low = weight_at(n0 + g, low, c);
      w_high = weight_at(n0 + g + 8, high, c);
    }
    const uint4 x =
        g < M ? *reinterpret_cast<const uint4*>(in + g * K + c * kMmaChunk + 8 * t) : zero;
    const uint32_t a0[4] = {w_low.x, w_high.x, w_low.y, w_high.y}, b0[2] = {x.x, x.y};
    const uint32_t a1[4] = {w_low.z, w_high.z, w_low.w, w_high.w}, b1[2] = {x.z, x.w};
    mma_16816<T>(acc, a0, b0);
    mma_16816<T>(acc, a1, b1);
  }
#pragma unroll
  for (int i = 0; i < 4; ++i) partial[warp][lane][i] = acc[i];
  __syncthreads();
  // acc[i] of lane (g, t): feature g (+ 8 for i >= 2), input row 2 t + (i & 1).
  if (threadIdx.x < 32 * 4) {
    const int src = threadIdx.x >> 2, i = threadIdx.x & 3;
    const int feature = (src >> 2) + (i >= 2 ? 8 : 0), m = 2 * (src & 3) + (i & 1);
    float sum = 0.0f;
#pragma unroll
    for (int w = 0; w < kGemvWarps; ++w) sum += partial[w][src][i];
    if (m < M && n0 + feature < a.n) store_gemv_output<T>(a, m, n0 + feature, sum);
  }
}

#define OSD_DISPATCH(dtype, ...)    \
  switch (dtype) {                  \
    case Dtype::f32: {              \
      using T = float;              \
      __VA_ARGS__;                  \
      break;                        \
    }                               \
    case Dtype::f16: {              \
      using T = __half;             \
      __VA_ARGS__;                  \
      break;                        \
    }                               \
    case Dtype::bf16: {             \
      using T = __nv_bfloat16;      \
      __VA_ARGS__;                  \
      break;                        \
    }                               \
    default:                        \
      return cudaErrorInvalidValue; \
  }

int last_error() {
  return static_cast<int>(cudaGetLastError());
}

constexpr int64_t kMaxGridY = 65535;

std::atomic<bool>& pdl_switch() {
  static std::atomic<bool> on([] {
    const char* v = std::getenv("OSD_PDL");
    return !(v && std::strcmp(v, "0") == 0);
  }());
  return on;
}

// A yes / no about the current device, asked once per device: `cache` holds 0 unknown, 1 yes,
// 2 no. False where there is no current device.
constexpr int kMaxDevices = 64;
using DeviceAnswers = std::atomic<int>[kMaxDevices];

template <typename Ask>
bool asked_once(DeviceAnswers& cache, Ask ask) {
  int device = 0;
  if (cudaGetDevice(&device) != cudaSuccess || device < 0 || device >= kMaxDevices) return false;
  int state = cache[device].load(std::memory_order_relaxed);
  if (state == 0) {
    state = ask(device) ? 1 : 2;
    cache[device].store(state, std::memory_order_relaxed);
  }
  return state == 1;
}

int compute_capability_major(int device) {
  int major = 0;
  return cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device) == cudaSuccess
             ? major
             : 0;
}

// Whether the device takes programmatic dependent launches, also inside CUDA-graph capture
// (compute capability 9.0 and a CUDA 12.3+ runtime).
bool pdl_supported_here() {
  static DeviceAnswers answers;
  return asked_once(answers, [](int device) {
    int runtime = 0;
    return compute_capability_major(device) >= 9 &&
           cudaRuntimeGetVersion(&runtime) == cudaSuccess && runtime >= 12030;
  });
}

int multiprocessors_here() {
  int device = 0, count = 0;
  if (cudaGetDevice(&device) != cudaSuccess ||
      cudaDeviceGetAttribute(&count, cudaDevAttrMultiProcessorCount, device) != cudaSuccess ||
      count <= 0)
    return 132;  // an H100 / H200
  return count;
}

// Queues kernel<<<grid, block, shared, stream>>>(args...), as a programmatic dependent launch
// where the device takes it and it is switched on (every kernel here starts with
// start_after_producer(), so an early start is safe).
template <typename... Params, typename... Args>
int launch(void (*kernel)(Params...), dim3 grid, dim3 block, size_t shared, cudaStream_t stream,
           Args... args) {
  if (pdl_switch().load(std::memory_order_relaxed) && pdl_supported_here()) {
    cudaLaunchConfig_t config = {};
    config.gridDim = grid;
    config.blockDim = block;
    config.dynamicSmemBytes = shared;
    config.stream = stream;
    cudaLaunchAttribute attribute[1];
    attribute[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attribute[0].val.programmaticStreamSerializationAllowed = 1;
    config.attrs = attribute;
    config.numAttrs = 1;
    const cudaError_t r = cudaLaunchKernelEx(&config, kernel, args...);
    if (r != cudaSuccess) cudaGetLastError();  // returned here: not left for libtorch's next check
    return static_cast<int>(r);
  }
  kernel<<<grid, block, shared, stream>>>(args...);
  return last_error();
}

}  // namespace

int add_rms_norm(Dtype dtype, const void* x, const void* residual, void* sum_out,
                 const void* weight, void* out, int64_t rows, int64_t hidden, float eps,
                 void* stream) {
  if (rows <= 0) return 0;
  if ((residual != nullptr) != (sum_out != nullptr) || !norm_supported(hidden))
    return cudaErrorInvalidValue;
  const int64_t chunks = hidden / 8;
  const int threads = static_cast<int>(((chunks < 1024 ? chunks : 1024) + 31) / 32 * 32);
  const unsigned blocks = static_cast<unsigned>(rows < 65535 ? rows : 65535);
  auto s = static_cast<cudaStream_t>(stream);
  OSD_DISPATCH(dtype, return launch(add_rms_norm_kernel<T>, blocks, threads, 0, s,
                                    static_cast<const T*>(x), static_cast<const T*>(residual),
                                    static_cast<T*>(sum_out), static_cast<const T*>(weight),
                                    static_cast<T*>(out), rows, static_cast<int>(hidden), eps));
}

int silu_mul(Dtype dtype, const void* gate_up, void* out, int64_t rows, int64_t inter,
             void* stream) {
  const int64_t n = rows * inter;
  if (n <= 0) return 0;
  const int threads = 256;
  const int64_t want = (n + threads - 1) / threads;
  const unsigned blocks = static_cast<unsigned>(want < 4096 ? want : 4096);
  auto s = static_cast<cudaStream_t>(stream);
  OSD_DISPATCH(dtype,
               return launch(silu_mul_kernel<T>, blocks, threads, 0, s,
                             static_cast<const T*>(gate_up), static_cast<T*>(out), rows, inter));
}

int rope_cache_write(Dtype dtype, const RopeCacheArgs& args, void* stream) {
  if (args.rows <= 0) return 0;
  if (args.head_dim % 2 != 0 || args.kv_heads <= 0 || args.heads % args.kv_heads != 0)
    return cudaErrorInvalidValue;
  const int threads = 128;
  const int64_t total = (args.heads + 2 * args.kv_heads) * args.head_dim;
  const dim3 grid(static_cast<unsigned>((total + threads - 1) / threads),
                  static_cast<unsigned>(args.rows < kMaxGridY ? args.rows : kMaxGridY));
  auto s = static_cast<cudaStream_t>(stream);
  OSD_DISPATCH(dtype, return launch(rope_cache_kernel<T>, grid, threads, 0, s, args));
}

bool norm_supported(int64_t hidden) {
  return hidden > 0 && hidden % 8 == 0 && hidden <= 8 * kNormChunks * 1024;
}

bool attention_supported(int64_t head_dim, int64_t span) {
  if (head_dim <= 0 || head_dim % 8 != 0 || head_dim / 8 > kAttentionThreads || span <= 0)
    return false;
  return attention_shared_bytes(head_dim, span) <= kSharedLimit;
}

int decode_attention(Dtype dtype, const AttentionArgs& args, void* stream) {
  if (args.rows <= 0) return 0;
  if (!attention_supported(args.head_dim, args.span) || args.kv_heads <= 0 ||
      args.heads % args.kv_heads != 0 || args.rows > kMaxGridY)
    return cudaErrorInvalidValue;
  const dim3 grid(static_cast<unsigned>(args.heads), static_cast<unsigned>(args.rows));
  const int threads = kAttentionThreads;
  const size_t shared = attention_shared_bytes(args.head_dim, args.span);
  auto s = static_cast<cudaStream_t>(stream);
  OSD_DISPATCH(dtype, return launch(decode_attention_kernel<T>, grid, threads, shared, s, args));
}

namespace {
size_t gemv_shared_bytes(Dtype dtype, int64_t rows, int64_t k) {
  return static_cast<size_t>(rows * k) * (dtype == Dtype::f32 ? 4 : 2);
}
// The opt-in shared-memory limit per block of the current device (227 KB on Hopper).
size_t gemv_shared_limit() {
  int device = 0, bytes = 0;
  if (cudaGetDevice(&device) != cudaSuccess ||
      cudaDeviceGetAttribute(&bytes, cudaDevAttrMaxSharedMemoryPerBlockOptin, device) !=
          cudaSuccess)
    return kSharedLimit;
  return static_cast<size_t>(bytes) - 1024;  // the kernel's static shared arrays
}
}  // namespace

bool gemv_supported(Dtype dtype, int64_t rows, int64_t k) {
  if (rows < 1 || rows > kGemvMaxRows || k <= 0 || k % 8 != 0) return false;
  static const size_t limit = gemv_shared_limit();
  return gemv_shared_bytes(dtype, rows, k) <= limit;
}

namespace {
// Whether the device has compute capability 8.0+ (mma.sync with bf16).
bool mma_supported_here() {
  static DeviceAnswers answers;
  return asked_once(answers, [](int device) { return compute_capability_major(device) >= 8; });
}
}  // namespace

bool gemv_mma_applies(Dtype dtype, int64_t rows, int64_t k) {
  // Up to 5 rows by default (a verification of 4 drafts at batch 1): on an H100 the
  // 119M target's 5-token step took 0.774 ms with it against 0.842 through cuBLAS, but its
  // 8-token step 1.125 against 0.873. OSD_GEMV_MMA=0: never; OSD_GEMV_MMA_MAX_ROWS: 2 to 8.
  static const int max_rows = [] {
    const char* off = std::getenv("OSD_GEMV_MMA");
    if (off && std::string(off) == "0") return 0;
    const char* v = std::getenv("OSD_GEMV_MMA_MAX_ROWS");
    const int n = v ? std::atoi(v) : 5;
    return n < 2 ? 0 : (n > kMmaRows ? kMmaRows : n);
  }();
  return dtype != Dtype::f32 && rows >= 2 && rows <= max_rows && k > 0 && k % kMmaChunk == 0 &&
         gemv_supported(dtype, rows, k) && mma_supported_here();
}

int gemv(Dtype dtype, const GemvArgs& args, void* stream) {
  if (args.n <= 0) return 0;
  if (!gemv_supported(dtype, args.rows, args.k) || (args.silu_input && args.norm_weight))
    return cudaErrorInvalidValue;
  if (gemv_mma_applies(dtype, args.rows, args.k)) {
    const unsigned blocks = static_cast<unsigned>((args.n + kMmaFeatures - 1) / kMmaFeatures);
    const size_t shared = gemv_shared_bytes(dtype, args.rows, args.k);
    auto s = static_cast<cudaStream_t>(stream);
    auto run = [&](auto kernel) -> int {
      if (shared > kSharedLimit) {  // past the default per-block limit: opt in to what it takes
        const cudaError_t raised = cudaFuncSetAttribute(
            kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(shared));
        if (raised != cudaSuccess) return static_cast<int>(raised);
      }
      return launch(kernel, blocks, kGemvThreads, shared, s, args);
    };
    return dtype == Dtype::bf16 ? run(gemv_mma_kernel<__nv_bfloat16>)
                                : run(gemv_mma_kernel<__half>);
  }
  // Enough blocks to fill the GPU at batch 1 (N = 2048 -> 256 blocks of 8 rows), up to 4 output
  // features per warp for the wide layers, so each block's staged input serves more of them.
  // Sized for two blocks on each multiprocessor.
  static const int64_t wave = 2 * static_cast<int64_t>(multiprocessors_here()) * kGemvWarps;
  int rows_per_warp = static_cast<int>((args.n + wave - 1) / wave);
  rows_per_warp = rows_per_warp < 1 ? 1 : (rows_per_warp > 4 ? 4 : rows_per_warp);
  const int64_t per_block = static_cast<int64_t>(kGemvWarps) * rows_per_warp;
  const unsigned blocks = static_cast<unsigned>((args.n + per_block - 1) / per_block);
  const size_t shared = gemv_shared_bytes(dtype, args.rows, args.k);
  auto s = static_cast<cudaStream_t>(stream);
  OSD_DISPATCH(dtype, {
    if (shared > kSharedLimit) {  // past the default per-block limit: opt in once
      static const cudaError_t raised =
          cudaFuncSetAttribute(gemv_kernel<T>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                               static_cast<int>(gemv_shared_limit()));
      if (raised != cudaSuccess) return static_cast<int>(raised);
    }
    return launch(gemv_kernel<T>, blocks, kGemvThreads, shared, s, args, rows_per_warp);
  });
}

void set_programmatic_launch(bool on) {
  pdl_switch().store(on);
}

bool programmatic_launch() {
  return pdl_switch().load() && pdl_supported_here();
}

const char* error_string(int code) {
  return cudaGetErrorString(static_cast<cudaError_t>(code));
}

}  // namespace osd::cuda_kernels
