#include "models/proposer.hpp"

#include <torch/torch.h>

#include <algorithm>
#include <chrono>

#include "models/error.hpp"

namespace osd {

namespace {
// The draft's randomness is a stream of its own, derived from the request's seed.
uint64_t draft_seed(uint64_t seed) { return seed * 0x9E3779B97F4A7C15ull + 0x5851F42D4C957F2Dull; }
}  // namespace

DraftProposer::DraftProposer(std::shared_ptr<Transformer> draft, int64_t num_slots, int64_t max_len)
    : draft_(std::move(draft)), cache_(draft_->make_cache(num_slots, max_len)), graphs_(*draft_, cache_) {}

void DraftProposer::add(SeqId id, const std::vector<int64_t>& prompt, const SamplingParams& params) {
  if (prompt.empty()) throw Error("draft: empty prompt");
  if (seqs_.count(id)) throw Error("draft: sequence " + std::to_string(id) + " already present");
  const int64_t slot = draft_->prefill_slot(cache_, std::vector<int64_t>(prompt.begin(), prompt.end() - 1));
  Seq s{slot, {prompt.back()}, params, RequestRng(draft_seed(params.seed))};
  s.cached.assign(prompt.begin(), prompt.end() - 1);
  seqs_.emplace(id, std::move(s));
}

void DraftProposer::remove(SeqId id) {
  auto it = seqs_.find(id);
  if (it == seqs_.end()) return;
  cache_.free_slot(it->second.slot);
  seqs_.erase(it);
}

int64_t DraftProposer::room(SeqId id) const {
  const auto& s = seqs_.at(id);
  const int64_t len = cache_.length(s.slot) + static_cast<int64_t>(s.pending.size());
  const int64_t limit = std::min(cache_.max_len(), draft_->config().max_position_embeddings);
  // Proposing k runs pending + k - 1 tokens: len + k - 1 <= limit.
  return std::max<int64_t>(0, limit - len + 1);
}

Proposals DraftProposer::propose(const std::vector<SeqId>& ids, const std::vector<int64_t>& k) {
  if (ids.size() != k.size()) throw Error("propose: ids and k differ in length");
  const auto t0 = std::chrono::steady_clock::now();
  const int64_t B = static_cast<int64_t>(ids.size());
  const int64_t K = B ? *std::max_element(k.begin(), k.end()) : 0;
  const int64_t V = draft_->config().vocab_size;
  std::vector<Seq*> rows(B);
  for (int64_t i = 0; i < B; ++i) {
    auto it = seqs_.find(ids[i]);
    if (it == seqs_.end()) throw Error("propose: unknown sequence " + std::to_string(ids[i]));
    if (k[i] < 0 || k[i] > room(ids[i]))
      throw Error("propose: k = " + std::to_string(k[i]) + " does not fit sequence " + std::to_string(ids[i]));
    rows[i] = &it->second;
  }
  Proposals out;
  out.start_us = std::chrono::duration<double, std::micro>(t0.time_since_epoch()).count();
  out.ids = ids;
  out.k = k;
  out.host_tokens.assign(B, {});
  auto dev = draft_->device();
  out.tokens = torch::zeros({B, K}, torch::kInt64);
  out.probs = torch::zeros({B, K, V}, torch::TensorOptions().dtype(torch::kFloat32).device(dev));
  for (int64_t i = 0; i < B; ++i) {
    rows[i]->length_before = cache_.length(rows[i]->slot);
    rows[i]->proposed = k[i];
    rows[i]->drafts.clear();
    rows[i]->run.clear();
    if (k[i] > 0) rows[i]->run = rows[i]->pending;
  }
  // Step j feeds, for each row still drafting, its pending chunk (j = 0) or its last draft token.
  for (int64_t j = 0; j < K; ++j) {
    std::vector<int64_t> active, slots, lens;
    for (int64_t i = 0; i < B; ++i)
      if (k[i] > j) active.push_back(i);
    int64_t T = 1;
    for (auto i : active) T = std::max<int64_t>(T, j == 0 ? rows[i]->pending.size() : 1);
    auto in = torch::zeros({static_cast<int64_t>(active.size()), T}, torch::kInt64);
    auto acc = in.accessor<int64_t, 2>();
    std::vector<SamplingParams> params;
    for (size_t r = 0; r < active.size(); ++r) {
      Seq& s = *rows[active[r]];
      if (j == 0) {
        for (size_t t = 0; t < s.pending.size(); ++t) acc[r][t] = s.pending[t];
        lens.push_back(static_cast<int64_t>(s.pending.size()));
      } else {
        acc[r][0] = s.drafts.back();
        s.run.push_back(s.drafts.back());
        lens.push_back(1);
      }
      slots.push_back(s.slot);
      params.push_back(s.params);
    }
    // One token per row (every step after the first): a CUDA graph where available.
    auto logits = T == 1 && graphs_.enabled() ? graphs_.forward(in, slots, lens).squeeze(1)
                                              : draft_->forward(in, slots, cache_, lens, /*last_only=*/true).squeeze(1);  // [A, V]
    auto q = processed_probs(logits, params);                                                // [A, V]
    std::vector<double> u;
    for (auto i : active) u.push_back(rows[i]->rng.uniform());
    auto drawn = sample_from_probs(q, torch::tensor(u, torch::kFloat64)).to(torch::kCPU);   // [A]
    auto rows_t = torch::tensor(active, torch::kInt64).to(dev);
    out.probs.select(1, j).index_copy_(0, rows_t, q);
    const int64_t* d = drawn.data_ptr<int64_t>();
    auto tok_acc = out.tokens.accessor<int64_t, 2>();
    for (size_t r = 0; r < active.size(); ++r) {
      rows[active[r]]->drafts.push_back(d[r]);
      tok_acc[active[r]][j] = d[r];
      out.host_tokens[active[r]].push_back(d[r]);
    }
    ++out.draft_steps;
  }
  out.tokens = out.tokens.to(dev);
  out.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return out;
}

void DraftProposer::commit(const Verdict& v) {
  auto it = seqs_.find(v.id);
  if (it == seqs_.end()) throw Error("draft commit: unknown sequence " + std::to_string(v.id));
  Seq& s = it->second;
  if (s.proposed < 0) throw Error("draft commit: sequence " + std::to_string(v.id) + " has no proposal");
  const int64_t k = s.proposed, n = v.accepted;
  if (n < 0 || n > k || static_cast<int64_t>(v.emitted.size()) != n + 1)
    throw Error("draft commit: verdict does not match the proposal");
  const int64_t next = v.emitted.back();
  if (k == 0) {
    s.pending.push_back(next);  // the draft ran nothing this round
  } else {
    // The cache ran pending + d_1..d_{k-1}; keep pending + d_1..d_min(n, k-1).
    const int64_t keep = static_cast<int64_t>(s.pending.size()) + std::min(n, k - 1);
    cache_.truncate(s.slot, s.length_before + keep);
    s.cached.insert(s.cached.end(), s.run.begin(), s.run.begin() + keep);
    s.pending = n == k ? std::vector<int64_t>{s.drafts.back(), next} : std::vector<int64_t>{next};
  }
  s.proposed = -1;
  if (s.stale) refresh(s);
}

void DraftProposer::refresh(Seq& s) {
  cache_.free_slot(s.slot);
  s.slot = draft_->prefill_slot(cache_, s.cached);
  s.stale = false;
  ++refreshes_;
}

void DraftProposer::set_model(std::shared_ptr<Transformer> draft, bool refresh_cache) {
  draft_ = std::move(draft);
  graphs_.reset(*draft_);  // graphs captured the old weights' memory
  if (!refresh_cache) return;
  for (auto& [id, s] : seqs_) {
    if (s.proposed >= 0) s.stale = true;  // its proposal's commit comes first
    else refresh(s);
  }
}

}  // namespace osd
