#include "models/core/fused_ops.hpp"

#include <torch/torch.h>

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "models/core/autocast.hpp"
#include "models/common/error.hpp"
#include "models/core/tensor_util.hpp"

#ifdef OSD_WITH_CUDA_KERNELS
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "models/core/cuda/kernels.hpp"
#endif

namespace osd::fused {
namespace {
std::atomic<bool>& switch_state() {
  static std::atomic<bool> on([] {
    const char* v = std::getenv("OSD_KERNELS");
    return !(v && std::string(v) == "torch");
  }());
  return on;
}

bool dtype_supported(c10::ScalarType t) {
  return t == torch::kFloat32 || t == torch::kFloat16 || t == torch::kBFloat16;
}

[[noreturn]] void unavailable(const char* what) {
  throw Error(std::string("fused ") + what + ": no fused kernels for these tensors in this build");
}

#ifdef OSD_WITH_CUDA_KERNELS
namespace k = cuda_kernels;

k::Dtype kernel_dtype(c10::ScalarType t) {
  if (t == torch::kFloat16) return k::Dtype::f16;
  if (t == torch::kBFloat16) return k::Dtype::bf16;
  return k::Dtype::f32;
}

void* current_stream(const at::Tensor& on) {
  return c10::cuda::getCurrentCUDAStream(on.device().index()).stream();
}

void check(int code, const char* what) {
  if (code != 0) throw Error(std::string("fused ") + what + ": " + k::error_string(code));
}

// Whether t's data is aligned for the kernels' 32-byte vector accesses (a view into the middle
// of a tensor may not be; a fresh allocation is).
bool is_aligned(const at::Tensor& t) {
  return reinterpret_cast<uintptr_t>(t.data_ptr()) % 32 == 0;
}
// Contiguous and aligned: t itself where it is, else a copy.
at::Tensor aligned(const at::Tensor& t) {
  auto c = t.contiguous();
  return is_aligned(c) ? c : c.clone();
}

void check_rows(const CacheRows& rows, int64_t B, int64_t T) {
  check_dtype(rows.positions, torch::kInt64, "fused kernels: positions");
  check_dtype(rows.slots, torch::kInt64, "fused kernels: slots");
  if (rows.positions.numel() != B * T || rows.slots.numel() != B)
    throw Error("fused kernels: positions " + shape_str(rows.positions) + " and slots " +
                shape_str(rows.slots) + " do not match " + std::to_string(B) + " rows of " +
                std::to_string(T) + " tokens");
  if (!rows.keys.is_contiguous() || !rows.values.is_contiguous() || rows.keys.dim() != 4 ||
      !is_aligned(rows.keys) || !is_aligned(rows.values))
    throw Error("fused kernels: the cache must be contiguous [slots, max_len, Hkv, D], aligned");
}
#endif
}  // namespace

bool built() {
#ifdef OSD_WITH_CUDA_KERNELS
  return true;
#else
  return false;
#endif
}

bool enabled() {
  return switch_state().load(std::memory_order_relaxed);
}
void set_enabled(bool on) {
  switch_state().store(on, std::memory_order_relaxed);
}

void set_programmatic_launch(bool on) {
#ifdef OSD_WITH_CUDA_KERNELS
  k::set_programmatic_launch(on);
#else
  (void)on;
#endif
}
bool programmatic_launch() {
#ifdef OSD_WITH_CUDA_KERNELS
  return k::programmatic_launch();
#else
  return false;
#endif
}

bool applies(const at::Tensor& like) {
  // No autograd through the kernels: training forwards (grad mode on) take libtorch's ops, and so
  // do forwards in an autocast scope (the distillers' guard), whose inputs mix float32 and bf16.
  return built() && enabled() && !at::GradMode::is_enabled() && like.defined() && like.is_cuda() &&
         dtype_supported(like.scalar_type()) && !cuda_autocast_enabled();
}

bool norm_applies(const at::Tensor& like, int64_t hidden) {
#ifdef OSD_WITH_CUDA_KERNELS
  return applies(like) && cuda_kernels::norm_supported(hidden);
#else
  (void)like, (void)hidden;
  return false;
#endif
}

std::pair<at::Tensor, at::Tensor> add_rms_norm(const at::Tensor& x_in, const at::Tensor& residual,
                                               const at::Tensor& weight, double eps) {
  if (!applies(x_in)) unavailable("add_rms_norm");
#ifdef OSD_WITH_CUDA_KERNELS
  const int64_t hidden = x_in.size(-1);
  if (!k::norm_supported(hidden))
    throw Error("fused add_rms_norm: hidden size " + std::to_string(hidden) +
                " is not a multiple of 8 up to 32768");
  if (weight.numel() != hidden || weight.scalar_type() != x_in.scalar_type() ||
      (residual.defined() &&
       (residual.sizes() != x_in.sizes() || residual.scalar_type() != x_in.scalar_type())))
    throw Error("fused add_rms_norm: x " + shape_str(x_in) + ", residual " +
                (residual.defined() ? shape_str(residual) : std::string("none")) + ", weight " +
                shape_str(weight) + " do not match");
  c10::cuda::CUDAGuard guard(x_in.device());
  auto x = aligned(x_in);
  auto r = residual.defined() ? aligned(residual) : at::Tensor();
  auto w = aligned(weight);
  auto sum = r.defined() ? torch::empty_like(x) : x;
  auto out = torch::empty_like(x);
  check(k::add_rms_norm(kernel_dtype(x.scalar_type()), x.data_ptr(),
                        r.defined() ? r.data_ptr() : nullptr,
                        r.defined() ? sum.data_ptr() : nullptr, w.data_ptr(), out.data_ptr(),
                        x.numel() / hidden, hidden, static_cast<float>(eps), current_stream(x)),
        "add_rms_norm");
  return {sum, out};
#else
  unavailable("add_rms_norm");
#endif
}

at::Tensor silu_mul(const at::Tensor& gate_up_in) {
  if (!applies(gate_up_in)) unavailable("silu_mul");
#ifdef OSD_WITH_CUDA_KERNELS
  if (gate_up_in.size(-1) % 2 != 0)
    throw Error("fused silu_mul: odd last dimension in " + shape_str(gate_up_in));
  c10::cuda::CUDAGuard guard(gate_up_in.device());
  auto gu = gate_up_in.contiguous();
  const int64_t inter = gu.size(-1) / 2;
  auto sizes = gu.sizes().vec();
  sizes.back() = inter;
  auto out = torch::empty(sizes, gu.options());
  check(k::silu_mul(kernel_dtype(gu.scalar_type()), gu.data_ptr(), out.data_ptr(),
                    gu.numel() / gu.size(-1), inter, current_stream(gu)),
        "silu_mul");
  return out;
#else
  unavailable("silu_mul");
#endif
}

at::Tensor rope_cache_write(const at::Tensor& qkv_in, const at::Tensor& cos,
                            const at::Tensor& sin_signed, const CacheRows& rows, int64_t heads) {
  if (!applies(qkv_in)) unavailable("rope_cache_write");
#ifdef OSD_WITH_CUDA_KERNELS
  check_dims(qkv_in, 3, "fused rope_cache_write: qkv [B, T, (H + 2 Hkv) D]");
  const int64_t B = qkv_in.size(0), T = qkv_in.size(1);
  check_rows(rows, B, T);
  const int64_t Hkv = rows.keys.size(2), D = rows.keys.size(3);
  if (qkv_in.size(2) != (heads + 2 * Hkv) * D || rows.keys.scalar_type() != qkv_in.scalar_type() ||
      cos.size(1) != D || cos.scalar_type() != torch::kFloat32 || !cos.is_contiguous() ||
      !sin_signed.is_contiguous())
    throw Error("fused rope_cache_write: qkv " + shape_str(qkv_in) + " does not match " +
                std::to_string(heads) + " heads and a cache of " + shape_str(rows.keys));
  c10::cuda::CUDAGuard guard(qkv_in.device());
  auto qkv = qkv_in.contiguous();
  auto q = torch::empty({B, T, heads, D}, qkv.options());
  k::RopeCacheArgs a;
  a.qkv = qkv.data_ptr();
  a.cos = cos.data_ptr<float>();
  a.sin_signed = sin_signed.data_ptr<float>();
  auto positions = rows.positions.contiguous(), slots = rows.slots.contiguous();
  a.positions = positions.data_ptr<int64_t>();
  a.slots = slots.data_ptr<int64_t>();
  a.q_out = q.data_ptr();
  a.k_cache = rows.keys.data_ptr();
  a.v_cache = rows.values.data_ptr();
  a.rows = B * T;
  a.tokens = T;
  a.max_len = rows.keys.size(1);
  a.max_positions = cos.size(0);
  a.heads = heads;
  a.kv_heads = Hkv;
  a.head_dim = D;
  check(k::rope_cache_write(kernel_dtype(qkv.scalar_type()), a, current_stream(qkv)),
        "rope_cache_write");
  return q;
#else
  unavailable("rope_cache_write");
#endif
}

bool attention_applies(const at::Tensor& like, int64_t tokens, int64_t head_dim, int64_t span) {
#ifdef OSD_WITH_CUDA_KERNELS
  return applies(like) && tokens <= kMaxAttentionTokens &&
         cuda_kernels::attention_supported(head_dim, span);
#else
  (void)like, (void)tokens, (void)head_dim, (void)span;
  return false;
#endif
}

at::Tensor attention(const at::Tensor& q_in, const CacheRows& rows, int64_t span, double scale) {
  if (!applies(q_in)) unavailable("attention");
#ifdef OSD_WITH_CUDA_KERNELS
  check_dims(q_in, 4, "fused attention: q [B, T, H, D]");
  const int64_t B = q_in.size(0), T = q_in.size(1), H = q_in.size(2), D = q_in.size(3);
  check_rows(rows, B, T);
  const int64_t Hkv = rows.keys.size(2);
  if (rows.keys.size(3) != D || H % Hkv != 0 || rows.keys.scalar_type() != q_in.scalar_type() ||
      !attention_applies(q_in, T, D, span))
    throw Error("fused attention: q " + shape_str(q_in) + " with a cache of " +
                shape_str(rows.keys) + " over a span of " + std::to_string(span) +
                " is not a shape the kernel takes");
  c10::cuda::CUDAGuard guard(q_in.device());
  auto q = q_in.contiguous();
  auto out = torch::empty({B, T, H * D}, q.options());
  auto positions = rows.positions.contiguous(), slots = rows.slots.contiguous();
  cuda_kernels::AttentionArgs a;
  a.q = q.data_ptr();
  a.k_cache = rows.keys.data_ptr();
  a.v_cache = rows.values.data_ptr();
  a.positions = positions.data_ptr<int64_t>();
  a.slots = slots.data_ptr<int64_t>();
  a.out = out.data_ptr();
  a.rows = B * T;
  a.tokens = T;
  a.max_len = rows.keys.size(1);
  a.span = span;
  a.heads = H;
  a.kv_heads = Hkv;
  a.head_dim = D;
  a.scale = static_cast<float>(scale);
  check(cuda_kernels::decode_attention(kernel_dtype(q.scalar_type()), a, current_stream(q)),
        "attention");
  return out;
#else
  unavailable("attention");
#endif
}

bool linear_applies(const at::Tensor& like, int64_t rows, int64_t k) {
#ifdef OSD_WITH_CUDA_KERNELS
  return applies(like) && k::gemv_supported(kernel_dtype(like.scalar_type()), rows, k);
#else
  (void)like, (void)rows, (void)k;
  return false;
#endif
}

bool gemv_preferred(const at::Tensor& weight, int64_t rows) {
  auto setting = [](const char* name, int64_t fallback) {
    const char* v = std::getenv(name);
    return v ? std::atoll(v) : fallback;
  };
  static const int64_t max_elements = setting("OSD_GEMV_MAX_ELEMENTS", int64_t{8} << 20);
  static const int64_t max_rows = setting("OSD_GEMV_MAX_ROWS", 1);
  if (weight.numel() > max_elements) return false;
#ifdef OSD_WITH_CUDA_KERNELS
  // 2 to 8 rows (verifications of k <= 7 drafts) on tensor cores where the kernel applies.
  if (rows > 1 && applies(weight) &&
      k::gemv_mma_applies(kernel_dtype(weight.scalar_type()), rows, weight.size(1)))
    return true;
#endif
  return rows <= max_rows;
}

at::Tensor linear(const at::Tensor& x_in, const at::Tensor& weight, const at::Tensor& bias,
                  const LinearInput& input, const at::Tensor& residual, bool out_float) {
  if (!applies(x_in)) unavailable("linear");
#ifdef OSD_WITH_CUDA_KERNELS
  const int64_t N = weight.size(0), K = weight.size(1);
  const int64_t x_cols = input.silu_input ? 2 * K : K;
  const int64_t rows = x_in.numel() / std::max<int64_t>(1, x_in.size(-1));
  const auto dt = x_in.scalar_type();
  auto same = [&](const at::Tensor& t, int64_t n) {
    return !t.defined() || (t.numel() == n && t.scalar_type() == dt && t.is_cuda());
  };
  if (weight.dim() != 2 || x_in.size(-1) != x_cols || weight.scalar_type() != dt ||
      !same(bias, N) || !same(input.norm_weight, K) || !same(residual, rows * N) ||
      (input.silu_input && input.norm_weight.defined()) ||
      !k::gemv_supported(kernel_dtype(dt), rows, K))
    throw Error("fused linear: x " + shape_str(x_in) + " with weight " + shape_str(weight) +
                " is not a shape the GEMV takes (rows <= 8, K % 8 == 0, matching dtypes)");
  c10::cuda::CUDAGuard guard(x_in.device());
  auto x = aligned(x_in);
  auto w = aligned(weight);
  auto b = bias.defined() ? aligned(bias) : at::Tensor();
  auto nw = input.norm_weight.defined() ? aligned(input.norm_weight) : at::Tensor();
  auto r = residual.defined() ? aligned(residual) : at::Tensor();
  auto sizes = x.sizes().vec();
  sizes.back() = N;
  auto out = torch::empty(sizes, x.options().dtype(out_float ? torch::kFloat32 : dt));
  k::GemvArgs a;
  a.x = x.data_ptr();
  a.weight = w.data_ptr();
  a.bias = b.defined() ? b.data_ptr() : nullptr;
  a.norm_weight = nw.defined() ? nw.data_ptr() : nullptr;
  a.residual = r.defined() ? r.data_ptr() : nullptr;
  a.out = out.data_ptr();
  a.rows = rows;
  a.n = N;
  a.k = K;
  a.eps = static_cast<float>(input.eps);
  a.silu_input = input.silu_input;
  a.out_float = out_float;
  check(k::gemv(kernel_dtype(dt), a, current_stream(x)), "linear");
  return out;
#else
  unavailable("linear");
#endif
}

}  // namespace osd::fused
