#include "models/distill_buffer.hpp"

#include <torch/torch.h>

#include "models/error.hpp"
#include "models/tensor_util.hpp"

namespace osd {

std::vector<DistillRecord> compact_distributions(const at::Tensor& probs_in, int64_t top_k) {
  check_dims(probs_in, 2, "compact_distributions probs [N, V]");
  const int64_t N = probs_in.size(0), V = probs_in.size(1);
  const int64_t K = top_k <= 0 || top_k >= V ? V : top_k;
  auto top = probs_in.to(torch::kFloat32).topk(K, -1);
  auto vals = std::get<0>(top).cpu().contiguous(), ids = std::get<1>(top).cpu().contiguous();
  std::vector<DistillRecord> out(N);
  for (int64_t i = 0; i < N; ++i) {
    const float* v = vals[i].data_ptr<float>();
    const int64_t* d = ids[i].data_ptr<int64_t>();
    out[i].top_probs.assign(v, v + K);
    out[i].top_ids.assign(d, d + K);
    double mass = 0;
    for (int64_t j = 0; j < K; ++j) mass += v[j];
    out[i].tail = static_cast<float>(std::max(0.0, 1.0 - mass));
  }
  return out;
}

at::Tensor rebuild_distributions(const std::vector<DistillRecord>& records, int64_t vocab) {
  const int64_t N = static_cast<int64_t>(records.size());
  auto out = torch::zeros({N, vocab});
  auto acc = out.accessor<float, 2>();
  for (int64_t i = 0; i < N; ++i) {
    const auto& r = records[i];
    const int64_t K = static_cast<int64_t>(r.top_ids.size());
    if (K > 0 && K < vocab) {
      const float spread = r.tail / static_cast<float>(vocab - K);
      for (int64_t v = 0; v < vocab; ++v) acc[i][v] = spread;
    }
    for (int64_t j = 0; j < K; ++j) {
      if (r.top_ids[j] < 0 || r.top_ids[j] >= vocab) throw Error("distillation record: token id outside the vocabulary");
      acc[i][r.top_ids[j]] = r.top_probs[j];
    }
  }
  return out / out.sum(-1, true).clamp_min(1e-12);
}

void DistillBuffer::add(DistillRecord r) {
  ++added_;
  if (opt_.heldout_every > 0 && r.source % opt_.heldout_every == 0) {
    bytes_ += r.bytes();
    heldout_.push_back(std::move(r));
    if (heldout_.size() > opt_.heldout_max) {
      bytes_ -= heldout_.front().bytes();
      heldout_.pop_front();
    }
  } else {
    bytes_ += r.bytes();
    train_.push_back(std::move(r));
    ++new_;
  }
  while (bytes_ > opt_.budget_bytes && !train_.empty()) {  // FIFO eviction
    bytes_ -= train_.front().bytes();
    train_.pop_front();
    ++evicted_;
  }
}

std::vector<DistillRecord> DistillBuffer::take_recent(size_t n) {
  n = std::min(n, train_.size());
  new_ = 0;
  return std::vector<DistillRecord>(train_.end() - static_cast<std::ptrdiff_t>(n), train_.end());
}

std::vector<DistillRecord> DistillBuffer::take_batch(size_t n, double new_fraction, uint64_t seed) {
  std::vector<DistillRecord> out;
  if (train_.empty() || n == 0) return out;
  const size_t fresh = std::min({static_cast<size_t>(new_), train_.size(),
                                 static_cast<size_t>(static_cast<double>(n) * new_fraction)});
  out.assign(train_.end() - static_cast<std::ptrdiff_t>(fresh), train_.end());
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<size_t> pick(0, train_.size() - 1);
  while (out.size() < n) out.push_back(train_[pick(rng)]);
  new_ = 0;
  return out;
}

std::vector<DistillRecord> DistillBuffer::heldout(int64_t route) const {
  std::vector<DistillRecord> out;
  for (const auto& r : heldout_)
    if (r.route == route) out.push_back(r);
  return out;
}

}  // namespace osd
