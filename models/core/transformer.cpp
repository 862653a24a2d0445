#include "models/core/transformer.hpp"

#include <ATen/Context.h>
#include <torch/torch.h>
#include <torch/version.h>

#include <cmath>
#include <cstdlib>

#include "models/common/error.hpp"
#include "models/core/fused_ops.hpp"
#include "models/core/tensor_util.hpp"

namespace osd {
namespace F = torch::nn::functional;

namespace {
// Comparison switches: <variable>=manual keeps osd's hand-written form on CUDA too.
bool manual_requested(const char* variable) {
  const char* v = std::getenv(variable);
  return v && std::string(v) == "manual";
}
// OSD_RMS_NORM=manual: the composed norm instead of libtorch's kernel.
[[maybe_unused]] bool use_fused_norm_on_cuda() {
  static const bool fused = !manual_requested("OSD_RMS_NORM");
  return fused;
}
}  // namespace

at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& weight, double eps) {
#if TORCH_VERSION_MAJOR >= 2 && (TORCH_VERSION_MAJOR > 2 || TORCH_VERSION_MINOR >= 4)
  // libtorch's rms_norm, weight included: one kernel where it has a fused one, against the seven
  // of the composed form (a decode step is launch-bound). It applies the weight before rounding
  // to x's dtype, where Hugging Face's LlamaRMSNorm rounds first: one rounding apart in bf16.
  if (x.is_cuda() && use_fused_norm_on_cuda()) return at::rms_norm(x, {x.size(-1)}, weight, eps);
#endif
  auto h = x.to(torch::kFloat32);
  h = h * torch::rsqrt(h.pow(2).mean(-1, /*keepdim=*/true) + eps);
  return weight * h.to(x.scalar_type());
}

namespace {
// at::Context::setSDPUseCuDNN where this libtorch has it (2.x); false where it has none.
template <class Context>
auto set_cudnn_sdpa(Context& ctx, bool on, int) -> decltype(ctx.setSDPUseCuDNN(on), bool()) {
  ctx.setSDPUseCuDNN(on);
  return true;
}
template <class Context>
bool set_cudnn_sdpa(Context&, bool, long) {
  return false;
}

// OSD_ATTENTION=manual: the hand-written attention instead of SDPA. OSD_SDPA_CUDNN=0 leaves
// cuDNN's attention out of SDPA (for comparisons: on the H100 the memory-efficient kernel that
// takes its place made a 1B target's prefill 2-3x slower and its training ~40% slower on an H100).
[[maybe_unused]] bool use_sdpa_on_cuda() {
  static const bool sdpa = [] {
    const char* cudnn = std::getenv("OSD_SDPA_CUDNN");
    if (cudnn && std::string(cudnn) == "0") set_cudnn_sdpa(at::globalContext(), false, 0);
    return !manual_requested("OSD_ATTENTION");
  }();
  return sdpa;
}

// Whether attention on x goes through SDPA (CUDA, libtorch >= 2.5, not switched off).
bool sdpa_path(const at::Tensor& x) {
#if TORCH_VERSION_MAJOR >= 2 && (TORCH_VERSION_MAJOR > 2 || TORCH_VERSION_MINOR >= 5)
  return x.is_cuda() && use_sdpa_on_cuda();
#else
  (void)x;
  return false;
#endif
}

at::Tensor linear(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b) {
  return b.defined() ? torch::nn::functional::linear(x, w, b) : torch::matmul(x, w.t());
}

// Whether `rows` rows of x through weight w [N, K] go through the fused GEMV (fused::linear).
bool gemv_takes(const at::Tensor& x, int64_t rows, const at::Tensor& w) {
  return fused::linear_applies(x, rows, w.size(1)) && fused::gemv_preferred(w, rows);
}
}  // namespace

Transformer::Transformer(const ModelConfig& config, uint64_t seed, c10::Device device) : config_(config), device_(c10::kCPU) {
  auto gen = at::detail::createCPUGenerator(seed);
  const auto f32 = torch::TensorOptions().dtype(torch::kFloat32);
  build([&](std::vector<int64_t> shape) { return at::normal(0.0, 0.02, shape, gen, f32); },
        [](int64_t n) { return torch::ones({n}); }, [](int64_t n) { return torch::zeros({n}); });
  to_device(device, to_scalar_type(config_.dtype));
}

Transformer::Transformer(const ModelConfig& config, c10::Device device, Uninitialized) : config_(config), device_(c10::kCPU) {
  const auto options = torch::TensorOptions().device(device).dtype(to_scalar_type(config.dtype));
  auto empty = [&](std::vector<int64_t> shape) { return torch::empty(shape, options); };
  build(empty, [&](int64_t n) { return torch::empty({n}, options); }, [&](int64_t n) { return torch::empty({n}, options); });
  to_device(device, to_scalar_type(config_.dtype));  // moves only the rope tables
}

template <typename Normal, typename Ones, typename Zeros>
void Transformer::build(Normal normal, Ones ones, Zeros zeros) {
  config_.finalize();
  if (auto err = config_.validate(); !err.empty()) throw Error("model config: " + err);
  const auto& c = config_;
  const int64_t qkv = c.q_dim() + 2 * c.kv_dim();
  embed_ = register_parameter("embed_tokens", normal({c.vocab_size, c.hidden_size}));
  // Parameter names: layers.<i>.<name>, the ModuleList giving the dotted prefix.
  auto list = register_module("layers", torch::nn::ModuleList());
  for (int64_t l = 0; l < c.num_layers; ++l) {
    auto block = std::make_shared<torch::nn::Module>("Block");
    auto reg = [&](const char* name, at::Tensor t) { return block->register_parameter(name, t); };
    LayerWeights w;
    w.attn_norm = reg("attn_norm", ones(c.hidden_size));
    w.wqkv = reg("wqkv", normal({qkv, c.hidden_size}));
    if (c.qkv_bias) w.bqkv = reg("bqkv", zeros(qkv));
    w.wo = reg("wo", normal({c.hidden_size, c.q_dim()}));
    if (c.o_bias) w.bo = reg("bo", zeros(c.hidden_size));
    w.mlp_norm = reg("mlp_norm", ones(c.hidden_size));
    w.w_gate_up = reg("w_gate_up", normal({2 * c.intermediate_size, c.hidden_size}));
    if (c.mlp_bias) w.b_gate_up = reg("b_gate_up", zeros(2 * c.intermediate_size));
    w.w_down = reg("w_down", normal({c.hidden_size, c.intermediate_size}));
    if (c.mlp_bias) w.b_down = reg("b_down", zeros(c.hidden_size));
    list->push_back(block);
    layers_.push_back(w);
  }
  norm_ = register_parameter("norm", ones(c.hidden_size));
  if (!c.tie_word_embeddings) lm_head_ = register_parameter("lm_head", normal({c.vocab_size, c.hidden_size}));
  rope_ = make_rope_tables(c, c10::Device(c10::kCPU));
}

c10::ScalarType Transformer::dtype() const { return to_scalar_type(config_.dtype); }

void Transformer::to_device(c10::Device device, c10::ScalarType dtype) {
  // Module::to keeps each parameter's TensorImpl (set_data), so LayerWeights stay valid.
  this->to(device, dtype);
  device_ = device;
  config_.dtype = from_scalar_type(dtype);
  rope_.cos = rope_.cos.to(device);
  rope_.sin_signed = rope_.sin_signed.to(device);
}

std::shared_ptr<Transformer> Transformer::clone(c10::Device device, c10::ScalarType dtype) const {
  auto cfg = config_;
  cfg.dtype = from_scalar_type(dtype);
  auto out = std::make_shared<Transformer>(cfg, 0, c10::Device(c10::kCPU));
  out->copy_weights_from(*this);
  out->to_device(device, dtype);
  for (auto& p : out->parameters()) p.set_requires_grad(false);
  return out;
}

void Transformer::copy_weights_from(const Transformer& other) {
  torch::NoGradGuard g;
  auto src = other.named_parameters();
  for (auto& p : named_parameters()) {
    auto* s = src.find(p.key());
    if (!s || s->sizes() != p.value().sizes())
      throw Error("copy_weights_from: parameter " + p.key() + " missing or of another shape");
    p.value().copy_(s->to(p.value().device(), p.value().scalar_type()));
  }
}

KVCache Transformer::make_cache(int64_t num_slots, int64_t max_len) const {
  return KVCache(config_, num_slots, max_len, device_, dtype());
}

at::Tensor Transformer::check_tokens(const at::Tensor& tokens, const char* what) const {
  check_dims(tokens, 2, std::string(what) + " tokens [batch, tokens]");
  check_dtype(tokens, torch::kInt64, std::string(what) + " tokens");
  if (tokens.size(0) == 0 || tokens.size(1) == 0)
    throw Error(std::string(what) + ": empty tokens tensor " + shape_str(tokens));
  if (tokens.device().is_cpu()) {  // ids from the host are checked; device-side ids come from us
    auto lo = tokens.min().item<int64_t>(), hi = tokens.max().item<int64_t>();
    if (lo < 0 || hi >= config_.vocab_size)
      throw Error(std::string(what) + ": token id " + std::to_string(lo < 0 ? lo : hi) +
                  " outside the vocabulary [0, " + std::to_string(config_.vocab_size) + ")");
  }
  return osd::to_device(tokens, device_);
}

at::Tensor Transformer::attention(int64_t l, const at::Tensor& x, const at::Tensor& cos,
                                  const at::Tensor& sin, const at::Tensor& mask,
                                  const CacheWrite* cw) {
  const auto& w = layers_[l];
  return linear(attend(l, linear(x, w.wqkv, w.bqkv), cos, sin, mask, cw), w.wo, w.bo);
}

at::Tensor Transformer::attend(int64_t l, const at::Tensor& qkv, const at::Tensor& cos,
                               const at::Tensor& sin, const at::Tensor& mask,
                               const CacheWrite* cw) {
  const auto& c = config_;
  const int64_t B = qkv.size(0), T = qkv.size(1), H = c.num_heads, Hkv = c.num_kv_heads,
                D = c.head_dim, G = H / Hkv;
  const double scale = 1.0 / std::sqrt(static_cast<double>(D));
  at::Tensor q, keys, values;
  if (cw && cw->fused) {
    // One kernel rotates q and k and writes k and v into the cache; with few query tokens a
    // second attends over the cache in place (no gather, no mask).
    fused::CacheRows rows{cw->positions, cw->slots, cw->cache->keys(l), cw->cache->values(l)};
    q = fused::rope_cache_write(qkv, rope_.cos, rope_.sin_signed, rows, H);  // [B, T, H, D]
    if (cw->fused_attention) return fused::attention(q, rows, cw->span, scale);
  } else {
    // q and k rotated together: one set of RoPE kernels for both.
    auto qk = apply_rope(qkv.narrow(-1, 0, (H + Hkv) * D).view({B, T, H + Hkv, D}), cos, sin);
    q = qk.narrow(2, 0, H);       // [B, T, H, D]
    keys = qk.narrow(2, H, Hkv);  // [B, T, Hkv, D]
    values = qkv.narrow(-1, (H + Hkv) * D, Hkv * D).view({B, T, Hkv, D});
    if (cw) {
      // Rows of the flat cache [slots * L, Hkv, D]: one index_copy each (cheaper than
      // index_put's two-index kernel on the GPU).
      cw->cache->keys(l).view({-1, Hkv, D}).index_copy_(0, cw->flat_index, keys.flatten(0, 1));
      cw->cache->values(l).view({-1, Hkv, D}).index_copy_(0, cw->flat_index, values.flatten(0, 1));
    }
  }
  if (cw) {                                                               // [B, S, Hkv, D]
    auto& kc = cw->cache->keys(l);                                        // [slots, L, Hkv, D]
    auto& vc = cw->cache->values(l);
    if (cw->read_slots.defined()) {
      keys = kc.narrow(1, 0, cw->span).index_select(0, cw->read_slots);
      values = vc.narrow(1, 0, cw->span).index_select(0, cw->read_slots);
    } else {
      keys = kc.narrow(0, cw->first_slot, B).narrow(1, 0, cw->span);
      values = vc.narrow(0, cw->first_slot, B).narrow(1, 0, cw->span);
    }
  }
  const int64_t S = keys.size(1);
  keys = keys.permute({0, 2, 1, 3});                                      // [B, Hkv, S, D]
  values = values.permute({0, 2, 1, 3});
  at::Tensor out;                                                         // [B, T, H * D]
#if TORCH_VERSION_MAJOR >= 2 && (TORCH_VERSION_MAJOR > 2 || TORCH_VERSION_MINOR >= 5)
  if (sdpa_path(qkv)) {  // mask: additive, in x's dtype (run_layers)
    auto qh = q.transpose(1, 2);                                          // [B, H, T, D]
    auto o = at::scaled_dot_product_attention(qh, keys, values, mask, 0.0, false, scale,
                                              /*enable_gqa=*/G > 1);      // [B, H, T, D]
    out = o.transpose(1, 2).reshape({B, T, H * D});
  }
#endif
  if (!out.defined()) {
    // Query heads grouped under their KV head: [B, Hkv, G * T, D]; K/V are never copied per group.
    auto qg = q.view({B, T, Hkv, G, D}).permute({0, 2, 3, 1, 4}).reshape({B, Hkv, G * T, D});
    auto scores = torch::matmul(qg, keys.transpose(-1, -2)) * scale;     // [B, Hkv, G*T, S]
    scores = scores.view({B, Hkv, G, T, S}).masked_fill(mask.unsqueeze(1).logical_not(),
                                                        -std::numeric_limits<float>::infinity());
    auto probs = torch::softmax(scores, -1, torch::kFloat32).to(q.scalar_type());
    auto o = torch::matmul(probs.view({B, Hkv, G * T, S}), values);       // [B, Hkv, G*T, D]
    out = o.view({B, Hkv, G, T, D}).permute({0, 3, 1, 2, 4}).reshape({B, T, H * D});
  }
  return out;  // [B, T, H * D], before the output projection
}

at::Tensor Transformer::mlp(int64_t l, const at::Tensor& x) {
  const auto& w = layers_[l];
  const int64_t I = config_.intermediate_size;
  auto gu = linear(x, w.w_gate_up, w.b_gate_up);                          // [B, T, 2I]
  auto h = fused::applies(gu) ? fused::silu_mul(gu)                       // [B, T, I]
                              : F::silu(gu.narrow(-1, 0, I)) * gu.narrow(-1, I, I);
  return linear(h, w.w_down, w.b_down);
}

at::Tensor Transformer::run_layers(at::Tensor x, const at::Tensor& positions,
                                   const at::Tensor& keep, const CacheWrite* cw) {
  at::Tensor cos, sin, mask;
  if (!cw || !cw->fused) {  // the fused kernel reads the fp32 tables by position itself
    // positions: [B, T] -> cos/sin [B, T, 1, D] in the activation dtype (HF casts after fp32 math).
    auto pos = positions.clamp_max(config_.max_position_embeddings - 1);
    cos = rope_.cos.index({pos}).to(x.scalar_type()).unsqueeze(2);
    sin = rope_.sin_signed.index({pos}).to(x.scalar_type()).unsqueeze(2);
  }
  if (!cw || !cw->fused_attention) {  // the fused attention masks by position itself
    // SDPA takes the mask as an additive bias (0 / -inf, x's dtype), made here once instead of
    // converted from the boolean form in every layer.
    mask = sdpa_path(x)
               ? torch::zeros(keep.sizes(), x.options())
                     .masked_fill_(keep.logical_not(), -std::numeric_limits<float>::infinity())
               : keep;
  }
  // The residual stream and the next norm's input come out of one kernel where it is fused:
  // stream = stream + delta; h = rms_norm(stream) * weight.
  const double eps = config_.rms_norm_eps;
  const bool fuse = fused::norm_applies(x, config_.hidden_size);
  auto add_norm = [&](const at::Tensor& stream, const at::Tensor& delta, const at::Tensor& weight) {
    if (fuse) return fused::add_rms_norm(stream, delta, weight, eps);
    auto sum = delta.defined() ? stream + delta : stream;
    return std::make_pair(sum, rms_norm(sum, weight, eps));
  };
  const int64_t L = config_.num_layers;
  const int64_t rows = x.size(0) * x.size(1);
  const auto gemv = [&](const at::Tensor& w) { return gemv_takes(x, rows, w); };
  if (fuse && L > 0 && gemv(layers_[0].wqkv) && gemv(layers_[0].wo) &&  // every layer's shapes
      gemv(layers_[0].w_gate_up) && gemv(layers_[0].w_down)) {
    // One row (a batch-1 decode step): each linear layer is one GEMV kernel that applies the norm
    // (or SiLU * up) to its input and adds the residual in its epilogue. Six kernels a layer.
    at::Tensor stream = x;
    for (int64_t l = 0; l < L; ++l) {
      const auto& w = layers_[l];
      auto qkv = fused::linear(stream, w.wqkv, w.bqkv, {w.attn_norm, eps}, {});  // [B, T, QKV]
      stream = fused::linear(attend(l, qkv, cos, sin, mask, cw), w.wo, w.bo, {}, stream);
      auto gate_up = fused::linear(stream, w.w_gate_up, w.b_gate_up, {w.mlp_norm, eps}, {});
      stream = fused::linear(gate_up, w.w_down, w.b_down, {at::Tensor(), eps, true}, stream);
    }
    return fused::add_rms_norm(stream, at::Tensor(), norm_, eps).second;
  }
  auto [stream, h] = add_norm(x, at::Tensor(), L > 0 ? layers_[0].attn_norm : norm_);
  for (int64_t l = 0; l < L; ++l) {
    std::tie(stream, h) =
        add_norm(stream, attention(l, h, cos, sin, mask, cw), layers_[l].mlp_norm);
    std::tie(stream, h) = add_norm(stream, mlp(l, h), l + 1 < L ? layers_[l + 1].attn_norm : norm_);
  }
  return h;  // [B, T, hidden], after the final norm
}

at::Tensor Transformer::logits(const at::Tensor& h) {
  const int64_t rows = h.numel() / h.size(-1);
  if (gemv_takes(h, rows, lm_head()))
    return fused::linear(h, lm_head(), at::Tensor(), {}, at::Tensor(), /*out_float=*/true);
  return torch::matmul(h, lm_head().t()).to(torch::kFloat32);
}

namespace {
// On CUDA, chunks of more than 16 tokens (prefills, the distiller's batches) run right-padded to a
// multiple of 64, at most `room` tokens: cuDNN's attention builds a plan per query length, and a
// new plan per prompt length cost ~50-90 ms per request on the H200. Padded positions come after
// every real one (causal: they change nothing before them) and their outputs are dropped.
int64_t padded_length(int64_t T, int64_t room, const c10::Device& device) {
  if (T <= 16 || !device.is_cuda()) return T;  // decode and verification shapes are few
  return std::max(T, std::min((T + 63) / 64 * 64, room));
}

// Which of a span's key positions each query may see: key_pos <= its position. [B, 1, T, S] bool.
at::Tensor span_mask(const at::Tensor& positions, int64_t span) {
  auto key_pos = torch::arange(span, positions.options());  // [S]
  return (key_pos.view({1, 1, span}) <= positions.unsqueeze(2)).unsqueeze(1);
}
}  // namespace

Transformer::CacheWrite Transformer::cache_write(KVCache& cache, const at::Tensor& slots,
                                                 const at::Tensor& positions, int64_t span) {
  CacheWrite cw;
  cw.cache = &cache;
  cw.positions = positions;
  cw.slots = slots;
  cw.read_slots = slots;
  cw.span = span;
  const auto& like = cache.keys(0);
  cw.fused = fused::applies(like);
  cw.fused_attention =
      cw.fused && fused::attention_applies(like, positions.size(1), like.size(3), span);
  if (!cw.fused) cw.flat_index = (slots.view({-1, 1}) * cache.max_len() + positions).view({-1});
  return cw;
}

at::Tensor Transformer::forward(const at::Tensor& tokens_in, const std::vector<int64_t>& slots,
                                KVCache& cache, const std::vector<int64_t>& num_new_in,
                                bool last_only, int64_t last_n) {
  auto tokens = check_tokens(tokens_in, "forward");
  const int64_t T_real = tokens.size(1);
  const int64_t limit = std::min(cache.max_len(), config_.max_position_embeddings);
  if (padded_length(T_real, limit, device_) > T_real && static_cast<int64_t>(slots.size()) == tokens.size(0)) {
    int64_t room = limit;  // the padded positions must fit every row's cache
    for (auto s : slots) room = std::min(room, limit - cache.length(s));
    const int64_t T_pad = padded_length(T_real, room, device_);
    if (T_pad > T_real) tokens = torch::constant_pad_nd(tokens, {0, T_pad - T_real}, 0);  // [B, T_pad]
  }
  const int64_t B = tokens.size(0), T = tokens.size(1);
  if (static_cast<int64_t>(slots.size()) != B)
    throw Error("forward: " + std::to_string(slots.size()) + " slots for a batch of " +
                std::to_string(B) + " rows");
  std::vector<int64_t> num_new = num_new_in.empty() ? std::vector<int64_t>(B, T_real) : num_new_in;
  if (static_cast<int64_t>(num_new.size()) != B)
    throw Error("forward: num_new has " + std::to_string(num_new.size()) + " entries for " +
                std::to_string(B) + " rows");
  if (cache.num_layers() != config_.num_layers || cache.device() != device_ ||
      cache.keys(0).size(2) != config_.num_kv_heads || cache.keys(0).size(3) != config_.head_dim)
    throw Error("forward: KV cache was made for another model shape or device");
  cache.check_append(slots, T);
  std::vector<int64_t> lengths(B);
  int64_t span = 0;
  for (int64_t i = 0; i < B; ++i) {
    if (num_new[i] < 1 || num_new[i] > T)
      throw Error("forward: num_new[" + std::to_string(i) + "] = " + std::to_string(num_new[i]) +
                  " outside [1, " + std::to_string(T) + "]");
    lengths[i] = cache.length(slots[i]);
    if (lengths[i] + num_new[i] > config_.max_position_embeddings)
      throw Error("forward: sequence in slot " + std::to_string(slots[i]) + " would reach " +
                  std::to_string(lengths[i] + num_new[i]) + " positions, past max_position_embeddings " +
                  std::to_string(config_.max_position_embeddings));
    span = std::max(span, lengths[i] + T);
  }
  // On CUDA the attention span is rounded up to a multiple of 128 (masked past each row's end):
  // kernels and their plans (cuDNN's SDPA builds one per shape) see few distinct shapes.
  if (device_.is_cuda()) span = std::min(cache.max_len(), (span + 127) / 128 * 128);
  torch::NoGradGuard no_grad;
  auto i64 = torch::TensorOptions().dtype(torch::kInt64);
  auto lens = osd::to_device(torch::tensor(lengths, i64), device_);                         // [B]
  auto positions =
      lens.unsqueeze(1) + torch::arange(T, i64.device(device_)).unsqueeze(0);  // [B, T]
  auto cw = cache_write(cache, osd::to_device(torch::tensor(slots, i64), device_), positions, span);
  auto mask = cw.fused_attention ? at::Tensor() : span_mask(positions, span);  // [B, 1, T, S]
  bool contiguous = true;
  for (int64_t i = 1; i < B; ++i) contiguous = contiguous && slots[i] == slots[0] + i;
  if (contiguous) {  // read the run of slots as one narrow instead of a gather
    cw.first_slot = slots[0];
    cw.read_slots = at::Tensor();
  }

  auto x = F::embedding(tokens, embed_);                                          // [B, T, hidden]
  auto h = run_layers(x, positions, mask, &cw);                                   // [B, T, hidden]
  if (last_only) {
    auto last = osd::to_device(torch::tensor(num_new, i64), device_)
                    .sub(1)
                    .view({B, 1, 1})
                    .expand({B, 1, h.size(2)});
    h = h.gather(1, last);                                                        // [B, 1, hidden]
  } else if (last_n > 0 && last_n < T_real) {
    h = h.narrow(1, T_real - last_n, last_n);  // [B, last_n, hidden]
  } else if (T > T_real) {
    h = h.narrow(1, 0, T_real);                                                   // [B, T_real, hidden]
  }
  auto logits = this->logits(h);  // [B, *, vocab]
  cache.commit(slots, num_new);
  return logits;
}

at::Tensor Transformer::step_static(const at::Tensor& tokens, const at::Tensor& lens,
                                    const at::Tensor& slots, KVCache& cache, int64_t span) {
  torch::NoGradGuard no_grad;
  const int64_t B = tokens.size(0), T = tokens.size(1);
  if (span <= 0 || span > cache.max_len()) span = cache.max_len();
  auto i64 = torch::TensorOptions().dtype(torch::kInt64).device(device_);
  auto positions = lens.view({B, 1}) + torch::arange(T, i64).view({1, T});  // [B, T]
  auto cw = cache_write(cache, slots.view({B}), positions, span);
  auto mask = cw.fused_attention ? at::Tensor() : span_mask(positions, span);  // [B, 1, T, S]
  auto h = run_layers(F::embedding(tokens, embed_), positions, mask, &cw);              // [B, T, hidden]
  return logits(h);  // [B, T, vocab]
}

int64_t Transformer::prefill_slot(KVCache& cache, const std::vector<int64_t>& tokens,
                                  at::Tensor* logits, int64_t logit_positions) {
  const int64_t slot = cache.allocate_slot();
  try {
    if (!tokens.empty()) {
      auto out = forward(torch::tensor(tokens).view({1, -1}), {slot}, cache, {},
                         /*last_only=*/logits == nullptr, logit_positions);  // [1, n, V]
      if (logits) *logits = out[0];                                          // [n, V]
    }
  } catch (...) {
    cache.free_slot(slot);
    throw;
  }
  return slot;
}

int64_t Transformer::warm_attention_plans(KVCache& cache, bool full_forward) {
  const int64_t limit = std::min(cache.max_len(), config_.max_position_embeddings);
  // The lengths padded_length gives a prompt of more than 16 tokens: multiples of 64, and the
  // limit itself where padding to the next multiple would pass it.
  std::vector<int64_t> lengths;
  for (int64_t T = 64; T <= limit; T += 64) lengths.push_back(T);
  if (limit > 16 && limit % 64 != 0) lengths.push_back(limit);
  int64_t shapes = 0;
  torch::NoGradGuard no_grad;
  for (int64_t T : lengths) {
    const int64_t slot = cache.allocate_slot();
    try {
      forward(torch::zeros({1, T}, torch::kInt64), {slot}, cache, {}, /*last_only=*/true);
    } catch (...) {
      cache.free_slot(slot);
      throw;
    }
    cache.free_slot(slot);
    ++shapes;
    if (full_forward) {  // T <= limit <= max_position_embeddings
      forward_full(torch::zeros({1, T}, torch::kInt64));
      ++shapes;
    }
  }
  return shapes;
}

at::Tensor Transformer::forward_full(const at::Tensor& tokens_in) {
  auto tokens = check_tokens(tokens_in, "forward_full");
  const int64_t T_real = tokens.size(1);
  if (T_real > config_.max_position_embeddings)
    throw Error("forward_full: " + std::to_string(T_real) + " tokens exceed max_position_embeddings " +
                std::to_string(config_.max_position_embeddings));
  const int64_t T_pad = padded_length(T_real, config_.max_position_embeddings, device_);
  if (T_pad > T_real) tokens = torch::constant_pad_nd(tokens, {0, T_pad - T_real}, 0);  // [B, T_pad]
  const int64_t B = tokens.size(0), T = tokens.size(1);
  auto i64 = torch::TensorOptions().dtype(torch::kInt64).device(device_);
  auto positions = torch::arange(T, i64).unsqueeze(0).expand({B, T});            // [B, T]
  auto mask = torch::ones({T, T}, i64.dtype(torch::kBool)).tril().view({1, 1, T, T});
  auto x = F::embedding(tokens, embed_);
  auto h = run_layers(x, positions, mask, nullptr).narrow(1, 0, T_real);          // [B, T_real, hidden]
  return logits(h);  // [B, T_real, vocab]
}

}  // namespace osd
