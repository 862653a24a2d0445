#include "models/distillation/distill_buffer.hpp"

#include <torch/torch.h>

#include <cstring>
#include <fstream>
#include <map>

#include <unordered_map>
#include <unordered_set>

#include "models/common/error.hpp"
#include "models/common/files.hpp"
#include "models/core/tensor_util.hpp"

namespace osd {

StagedTopK stage_top_k(const at::Tensor& probs_in, int64_t top_k) {
  check_dims(probs_in, 2, "stage_top_k probs [N, V]");
  const int64_t V = probs_in.size(1);
  const int64_t K = top_k <= 0 || top_k >= V ? V : top_k;
  auto top = probs_in.to(torch::kFloat32).topk(K, -1);
  auto vals = std::get<0>(top), ids = std::get<1>(top);  // [N, K]
  return {vals.cpu().contiguous(), ids.cpu().contiguous()};
}

StagedTopK stage_logits(const at::Tensor& logits, int64_t top_k) {
  check_dims(logits, 2, "stage_logits logits [N, V]");
  return stage_top_k(torch::softmax(logits, -1, torch::kFloat32), top_k);
}

std::vector<DistillRecord> compact_rows(const StagedTopK& staged,
                                        const std::vector<int64_t>& rows) {
  const int64_t N = staged.probs.size(0), K = staged.probs.size(1);
  std::vector<DistillRecord> out(rows.size());
  for (size_t m = 0; m < rows.size(); ++m) {
    const int64_t i = rows[m];
    if (i < 0 || i >= N)
      throw Error("compact_rows: row " + std::to_string(i) + " outside the staged top-k");
    const float* v = staged.probs.data_ptr<float>() + i * K;
    const int64_t* d = staged.ids.data_ptr<int64_t>() + i * K;
    out[m].top_probs.assign(v, v + K);
    out[m].top_ids.assign(d, d + K);
    double mass = 0;
    for (int64_t j = 0; j < K; ++j) mass += v[j];
    out[m].tail = static_cast<float>(std::max(0.0, 1.0 - mass));
  }
  return out;
}

std::vector<DistillRecord> make_records(const RecordSource& src) {
  const size_t n = src.rows.size(), seqs = src.bases.size();
  if (src.seq.size() != n || src.appended.size() != n || src.drafts.size() != seqs ||
      src.sources.size() != seqs || src.greedy.size() != seqs)
    throw Error("make_records: " + std::to_string(n) + " records, " + std::to_string(seqs) +
                " sequences, and per-record or per-sequence fields of other lengths");
  for (size_t m = 0; m < n; ++m) {
    const int64_t q = src.seq[m], j = src.appended[m];
    if (q < 0 || q >= static_cast<int64_t>(seqs) || j < 0 ||
        j > static_cast<int64_t>(src.drafts[q].size()))
      throw Error("make_records: record " + std::to_string(m) + " names sequence " +
                  std::to_string(q) + " and " + std::to_string(j) +
                  " draft tokens it does not have");
  }
  if (!src.staged.probs.defined() && !src.logits.defined())
    throw Error("make_records: the source has neither logits nor a staged top-k");
  const StagedTopK staged =
      src.staged.probs.defined() ? src.staged : stage_logits(src.logits, src.top_k);
  auto out = compact_rows(staged, src.rows);  // checks the rows
  for (size_t m = 0; m < n; ++m) {
    const auto& base = src.bases[src.seq[m]];
    const auto& draft = src.drafts[src.seq[m]];
    auto& r = out[m];
    r.context.reserve(base.size() + src.appended[m]);
    r.context.assign(base.begin(), base.end());
    r.context.insert(r.context.end(), draft.begin(), draft.begin() + src.appended[m]);
    r.route = src.route;
    r.source = src.sources[src.seq[m]];
    r.greedy = src.greedy[src.seq[m]] != 0;
    r.prompt = src.prompt;
  }
  return out;
}

std::vector<DistillRecord> compact_distributions(const at::Tensor& probs, int64_t top_k) {
  auto staged = stage_top_k(probs, top_k);
  std::vector<int64_t> rows(staged.probs.size(0));
  for (size_t i = 0; i < rows.size(); ++i) rows[i] = static_cast<int64_t>(i);
  return compact_rows(staged, rows);
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

void DistillBuffer::restore_heldout(std::vector<DistillRecord> records) {
  std::map<int64_t, int64_t> renamed;  // earlier run's request -> -1, -2, ...
  for (auto& r : records) {
    auto it = renamed.emplace(r.source, -1 - static_cast<int64_t>(renamed.size())).first;
    r.source = it->second;
    push_heldout(std::move(r));
  }
}

void DistillBuffer::push_heldout(DistillRecord r) {
  bytes_ += r.bytes();
  heldout_.push_back(std::move(r));
  if (heldout_.size() > opt_.heldout_max) {
    bytes_ -= heldout_.front().bytes();
    heldout_.pop_front();
  }
}

void DistillBuffer::add(DistillRecord r) {
  ++added_;
  if (opt_.heldout_every > 0 && r.source % opt_.heldout_every == 0) {
    if (r.prompt) return;  // held-out requests' prompts: neither trained on nor measured
    push_heldout(std::move(r));
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
  new_ = 0;
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<size_t> pick(0, train_.size() - 1);
  if (!opt_.replay_requests) {
    while (out.size() < n) out.push_back(train_[pick(rng)]);
    return out;
  }
  // Whole requests: a record drawn uniformly picks its request (a request is drawn in proportion
  // to its records); each request at most once, while requests not yet drawn remain.
  std::unordered_map<int64_t, std::vector<size_t>> by_request;  // source -> indices, in order
  for (size_t i = 0; i < train_.size(); ++i) by_request[train_[i].source].push_back(i);
  std::unordered_set<int64_t> drawn;
  while (out.size() < n) {
    const int64_t source = train_[pick(rng)].source;
    if (drawn.size() < by_request.size() && !drawn.insert(source).second) continue;
    for (size_t i : by_request[source]) {
      if (out.size() == n) break;
      out.push_back(train_[i]);
    }
  }
  return out;
}

std::vector<DistillRecord> DistillBuffer::heldout(int64_t route) const {
  std::vector<DistillRecord> out;
  for (const auto& r : heldout_)
    if (r.route == route) out.push_back(r);
  return out;
}

}  // namespace osd
