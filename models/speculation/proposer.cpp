#include "models/speculation/proposer.hpp"

#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <string>

#include "models/common/error.hpp"
#include "models/core/tensor_util.hpp"

namespace osd {

namespace {
// The draft's randomness is a stream of its own, derived from the request's seed.
uint64_t draft_seed(uint64_t seed) { return seed * 0x9E3779B97F4A7C15ull + 0x5851F42D4C957F2Dull; }
}  // namespace

DraftProposer::DraftProposer(std::shared_ptr<Transformer> draft, int64_t num_slots, int64_t max_len)
    : draft_(std::move(draft)),
      cache_(draft_->make_cache(num_slots, max_len)),
      graphs_(*draft_, cache_) {
  const char* env = std::getenv("OSD_GREEDY_DRAFT_GRAPH");
  greedy_graph_ = !(env && std::string(env) == "0");
}

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
  out.probs = torch::zeros({B, K, V}, torch::TensorOptions().dtype(torch::kFloat32).device(dev));
  bool all_greedy = true;
  for (int64_t i = 0; i < B; ++i) {
    rows[i]->length_before = cache_.length(rows[i]->slot);
    rows[i]->proposed = k[i];
    rows[i]->drafts.clear();
    rows[i]->run.clear();
    all_greedy = all_greedy && rows[i]->params.greedy();
  }
  // The drafted tokens stay on the device from step to step: step j + 1 feeds step j's draws
  // (gathered there), and the host reads the tokens once, after the last step. Each row's draft
  // randomness is drawn on the host up front, in the order the steps consume it.
  auto i64 = torch::TensorOptions().dtype(torch::kInt64).device(dev);
  at::Tensor tokens_dev;  // [B, K]
  const bool one_graph = all_greedy && greedy_graph_fits(rows, k);
  if (one_graph) {
    // Every row drafts K greedily: the K steps are one CUDA graph (GreedyDraftGraph). The rows'
    // generators advance as the step-by-step loop advances them.
    std::vector<std::vector<int64_t>> chunks;
    std::vector<int64_t> slots;
    for (auto* r : rows) {
      for (int64_t j = 0; j < K; ++j) r->rng.uniform();
      chunks.push_back(r->pending);
      slots.push_back(r->slot);
    }
    tokens_dev = graphs_.draft_greedy(chunks, slots, K).clone();  // the graph's buffer is reused
    out.draft_steps += K;
  } else {
    tokens_dev = torch::zeros({B, K}, i64);
  }
  for (int64_t j = 0; j < K && !one_graph; ++j) {
    std::vector<int64_t> active, slots, lens;
    for (int64_t i = 0; i < B; ++i)
      if (k[i] > j) active.push_back(i);
    const int64_t A = static_cast<int64_t>(active.size());
    auto active_dev = to_device(torch::tensor(active, torch::kInt64), dev);  // [A]
    std::vector<SamplingParams> params;
    std::vector<double> u;
    for (auto i : active) {
      slots.push_back(rows[i]->slot);
      lens.push_back(j == 0 ? static_cast<int64_t>(rows[i]->pending.size()) : 1);
      params.push_back(rows[i]->params);
      u.push_back(rows[i]->rng.uniform());
    }
    at::Tensor in;  // [A, T]
    if (j == 0) {   // the pending chunks, ragged (right-padded)
      int64_t T = 1;
      for (auto i : active) T = std::max<int64_t>(T, rows[i]->pending.size());
      in = torch::zeros({A, T}, torch::kInt64);
      auto acc = in.accessor<int64_t, 2>();
      for (int64_t r = 0; r < A; ++r)
        for (size_t t = 0; t < rows[active[r]]->pending.size(); ++t)
          acc[r][t] = rows[active[r]]->pending[t];
      in = to_device(in, dev);
    } else {
      in = tokens_dev.select(1, j - 1).index_select(0, active_dev).unsqueeze(1);  // [A, 1]
    }
    // A CUDA graph where available: every step after the first feeds one token per row, the first
    // the pending chunks (two tokens after a round that accepted every draft). Longer chunks run
    // eagerly rather than adding graph shapes.
    const int64_t T = in.size(1);
    at::Tensor logits;  // [A, V]
    if (graphs_.enabled() && T <= 4) {
      auto full = graphs_.forward(in, slots, lens, /*keep=*/false);  // [A, T, V], read at once
      if (T == 1) {
        logits = full.squeeze(1);
      } else {  // each row's last real position (rows are right-padded)
        std::vector<int64_t> last(lens);
        for (auto& x : last) x -= 1;
        auto at =
            to_device(torch::tensor(last, torch::kInt64), dev).view({A, 1, 1}).expand({A, 1, V});
        logits = full.gather(1, at).squeeze(1);
      }
    } else {
      logits = draft_->forward(in, slots, cache_, lens, /*last_only=*/true).squeeze(1);
    }
    at::Tensor drawn;  // [A]
    if (all_greedy) {
      drawn = logits.argmax(-1);  // q is one-hot at the draw: filled in after the loop
    } else {
      auto q = processed_probs(logits, params);  // [A, V]
      drawn = sample_from_probs(q, torch::tensor(u, torch::kFloat64));
      out.probs.select(1, j).index_copy_(0, active_dev, q);
    }
    tokens_dev.select(1, j).index_copy_(0, active_dev, drawn);
    ++out.draft_steps;
  }
  if (all_greedy && K > 0) {  // q = one-hot at each drawn token, zero past a row's k
    auto valid = prefix_mask(k, K, dev);  // [B, K]
    out.probs.scatter_(2, tokens_dev.unsqueeze(-1), valid.unsqueeze(-1).to(torch::kFloat32));
  }
  // The proposal's one host sync: the drafted tokens.
  out.tokens = tokens_dev;
  auto host = tokens_dev.to(torch::kCPU);
  auto tok_acc = host.accessor<int64_t, 2>();
  for (int64_t i = 0; i < B; ++i) {
    Seq& s = *rows[i];
    for (int64_t j = 0; j < k[i]; ++j) s.drafts.push_back(tok_acc[i][j]);
    out.host_tokens[i] = s.drafts;
    if (k[i] > 0) {  // the cache ran pending + d_1 .. d_(k-1)
      s.run = s.pending;
      s.run.insert(s.run.end(), s.drafts.begin(), s.drafts.end() - 1);
    }
  }
  out.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return out;
}

bool DraftProposer::greedy_graph_fits(const std::vector<Seq*>& rows,
                                      const std::vector<int64_t>& k) const {
  if (!greedy_graph_ || !graphs_.enabled() || rows.empty() || k.front() < 1) return false;
  int64_t first = 1;
  for (auto* r : rows) first = std::max<int64_t>(first, static_cast<int64_t>(r->pending.size()));
  if (first > 2) return false;  // longer chunks (after rounds with k = 0) go step by step
  const int64_t limit = std::min(cache_.max_len(), draft_->config().max_position_embeddings);
  for (size_t i = 0; i < rows.size(); ++i)
    if (k[i] != k.front() || cache_.length(rows[i]->slot) + first + k[i] - 1 > limit) return false;
  return true;
}

void DraftProposer::commit(const Verdict& v) {
  auto it = seqs_.find(v.id);
  if (it == seqs_.end()) throw Error("draft commit: unknown sequence " + std::to_string(v.id));
  Seq& s = it->second;
  // A round without draft tokens may skip the drafter: its verdict (k = 0) needs no proposal.
  if (s.proposed < 0 && v.k == 0) s.proposed = 0;
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
  if (refresh_cache) refresh_all();
}

void DraftProposer::load_weights(const Transformer& weights, bool refresh_cache) {
  draft_->copy_weights_from(weights);  // in place: the graphs read these tensors
  if (refresh_cache) refresh_all();
}

void DraftProposer::refresh_all() {
  for (auto& [id, s] : seqs_) {
    if (s.proposed >= 0) s.stale = true;  // its proposal's commit comes first
    else refresh(s);
  }
}

}  // namespace osd
