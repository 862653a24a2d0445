#include "models/speculation/sampling.hpp"

#include <torch/torch.h>

#include <cmath>

#include "models/common/error.hpp"
#include "models/core/tensor_util.hpp"

namespace osd {

std::string SamplingParams::validate() const {
  if (!std::isfinite(temperature) || temperature < 0 || temperature > 100)
    return "temperature must be in [0, 100] (got " + std::to_string(temperature) + ")";
  if (top_k < 0) return "top_k must be >= 0 (got " + std::to_string(top_k) + ")";
  if (!std::isfinite(top_p) || top_p <= 0 || top_p > 1)
    return "top_p must be in (0, 1] (got " + std::to_string(top_p) + ")";
  return "";
}

namespace {
uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}
}  // namespace

double position_uniform(uint64_t seed, int64_t position, DrawPurpose purpose) {
  uint64_t h = splitmix64(seed);
  h = splitmix64(h ^ static_cast<uint64_t>(position));
  h = splitmix64(h ^ static_cast<uint64_t>(purpose));
  return static_cast<double>(h >> 11) * 0x1.0p-53;
}

RequestRng::RequestRng(uint64_t seed) : gen_(seed) {}

double RequestRng::uniform() { return static_cast<double>(gen_() >> 11) * 0x1.0p-53; }

std::vector<double> RequestRng::uniforms(size_t n) {
  std::vector<double> u(n);
  for (auto& x : u) x = uniform();
  return u;
}

at::Tensor processed_probs(const at::Tensor& logits_in, const std::vector<SamplingParams>& params) {
  check_dims(logits_in, 2, "processed_probs logits [rows, vocab]");
  const int64_t N = logits_in.size(0), V = logits_in.size(1);
  if (params.size() != 1 && static_cast<int64_t>(params.size()) != N)
    throw Error("processed_probs: " + std::to_string(params.size()) + " params for " +
                std::to_string(N) + " rows");
  auto at = [&](int64_t i) -> const SamplingParams& { return params.size() == 1 ? params[0] : params[i]; };
  auto logits = logits_in.to(torch::kFloat32);
  std::vector<float> inv_temp(N), top_p(N);
  std::vector<int64_t> top_k(N);
  std::vector<uint8_t> greedy(N);
  bool any_filter = false, any_greedy = false, all_greedy = true;
  for (int64_t i = 0; i < N; ++i) {
    const auto& p = at(i);
    greedy[i] = p.greedy();
    inv_temp[i] = p.greedy() ? 1.0f : static_cast<float>(1.0 / p.temperature);
    top_k[i] = (p.top_k <= 0 || p.top_k >= V) ? V : p.top_k;
    top_p[i] = static_cast<float>(p.top_p);
    any_filter = any_filter || (!p.greedy() && (top_k[i] < V || top_p[i] < 1.0f));
    any_greedy = any_greedy || p.greedy();
    all_greedy = all_greedy && p.greedy();
  }
  auto dev = logits.device();
  auto f32 = torch::TensorOptions().dtype(torch::kFloat32);
  at::Tensor probs;
  if (!all_greedy) {
    auto scaled = logits * to_device(torch::tensor(inv_temp, f32), dev).unsqueeze(1);  // [N, V]
    if (any_filter) {
      auto sorted = scaled.sort(-1, /*descending=*/true);
      auto values = std::get<0>(sorted), index = std::get<1>(sorted);               // [N, V]
      auto rank = torch::arange(V, f32.dtype(torch::kInt64).device(dev)).unsqueeze(0);
      auto keep =
          rank < to_device(torch::tensor(top_k, f32.dtype(torch::kInt64)), dev).unsqueeze(1);
      auto ninf = -std::numeric_limits<float>::infinity();
      values = values.masked_fill(keep.logical_not(), ninf);
      auto p_sorted = torch::softmax(values, -1);
      auto mass_before = p_sorted.cumsum(-1) - p_sorted;                             // exclusive
      keep = keep.logical_and(mass_before < to_device(torch::tensor(top_p, f32), dev).unsqueeze(1));
      values = values.masked_fill(keep.logical_not(), ninf);
      scaled = torch::full_like(scaled, ninf).scatter(1, index, values);
    }
    probs = torch::softmax(scaled, -1);
  }
  if (any_greedy) {
    auto onehot = torch::zeros({N, V}, f32.device(dev))
                      .scatter_(1, logits.argmax(-1, /*keepdim=*/true), 1.0);
    if (all_greedy) return onehot;
    auto g = to_device(
        torch::tensor(std::vector<int64_t>(greedy.begin(), greedy.end())).to(torch::kBool), dev);
    probs = torch::where(g.unsqueeze(1), onehot, probs);
  }
  return probs;
}

at::Tensor sample_from_probs(const at::Tensor& probs, const at::Tensor& uniforms) {
  check_dims(probs, 2, "sample_from_probs probs [rows, vocab]");
  check_dims(uniforms, 1, "sample_from_probs uniforms [rows]");
  if (uniforms.size(0) != probs.size(0))
    throw Error("sample_from_probs: " + std::to_string(uniforms.size(0)) + " uniforms for " +
                std::to_string(probs.size(0)) + " rows");
  auto cdf = probs.to(torch::kFloat64).cumsum(-1);                                 // [N, V]
  auto target =
      (to_device(uniforms, probs.device()).to(torch::kFloat64) * cdf.select(1, -1)).unsqueeze(1);
  auto idx = torch::searchsorted(cdf, target, /*out_int32=*/false, /*right=*/true);  // [N, 1]
  return idx.squeeze(1).clamp_max(probs.size(1) - 1);
}

std::vector<int64_t> sample_tokens(const at::Tensor& logits, const std::vector<SamplingParams>& params,
                                   std::vector<RequestRng*> rngs) {
  const int64_t N = logits.size(0);
  if (static_cast<int64_t>(rngs.size()) != N) throw Error("sample_tokens: one rng per row needed");
  auto probs = processed_probs(logits, params);
  std::vector<double> u(N);
  for (int64_t i = 0; i < N; ++i) u[i] = rngs[i]->uniform();
  auto tokens = sample_from_probs(probs, torch::tensor(u, torch::kFloat64)).to(torch::kCPU);
  return std::vector<int64_t>(tokens.data_ptr<int64_t>(), tokens.data_ptr<int64_t>() + N);
}

}  // namespace osd
