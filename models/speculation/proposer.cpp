#include "models/speculation/proposer.hpp"

#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <string>

#include "models/common/error.hpp"
#include "models/core/tensor_util.hpp"

namespace osd {

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
  seqs_.emplace(id, Seq{slot, prompt, params, -1});
}

void DraftProposer::sync(const DraftSync& in) {
  auto it = seqs_.find(in.id);
  if (it == seqs_.end()) {
    if (in.known != 0)
      throw Error("draft sync: sequence " + std::to_string(in.id) + " is new here, but " +
                  std::to_string(in.known) + " of its tokens are said to be known");
    const int64_t slot = draft_->prefill_slot(cache_, {});  // empty: runs at its first proposal
    it = seqs_.emplace(in.id, Seq{slot, {}, in.params, -1}).first;
  }
  Seq& s = it->second;
  if (in.known < 0 || in.known > static_cast<int64_t>(s.tokens.size()))
    throw Error("draft sync: sequence " + std::to_string(in.id) + " holds " +
                std::to_string(s.tokens.size()) + " tokens, not " + std::to_string(in.known));
  truncate(s, in.known);
  s.tokens.insert(s.tokens.end(), in.tail.begin(), in.tail.end());
  s.params = in.params;
  s.proposed_from = -1;
}

void DraftProposer::truncate(Seq& s, int64_t keep) {
  s.tokens.resize(static_cast<size_t>(keep));
  if (cache_.length(s.slot) > keep) cache_.truncate(s.slot, keep);
}

int64_t DraftProposer::known(SeqId id) const {
  auto it = seqs_.find(id);
  return it == seqs_.end() ? 0 : static_cast<int64_t>(it->second.tokens.size());
}

void DraftProposer::remove(SeqId id) {
  auto it = seqs_.find(id);
  if (it == seqs_.end()) return;
  cache_.free_slot(it->second.slot);
  seqs_.erase(it);
}

int64_t DraftProposer::room(SeqId id) const {
  const auto& s = seqs_.at(id);
  const int64_t len = static_cast<int64_t>(s.tokens.size());
  const int64_t limit = std::min(cache_.max_len(), draft_->config().max_position_embeddings);
  // Proposing k runs the sequence and k - 1 draft tokens through the cache: len + k - 1 <= limit.
  return std::max<int64_t>(0, limit - len + 1);
}

std::vector<int64_t> DraftProposer::pending(Seq& s) {
  const int64_t len = static_cast<int64_t>(s.tokens.size());
  // The last token always runs in the proposal: it gives the distribution of the first draft.
  if (cache_.length(s.slot) >= len) cache_.truncate(s.slot, len - 1);
  return std::vector<int64_t>(s.tokens.begin() + cache_.length(s.slot), s.tokens.end());
}

void DraftProposer::catch_up(const std::vector<Seq*>& rows, int64_t longest_step) {
  std::vector<Seq*> behind;
  int64_t T = 0;
  for (auto* r : rows) {
    const int64_t n = static_cast<int64_t>(r->tokens.size()) - cache_.length(r->slot) - 1;
    if (n + 1 > longest_step) behind.push_back(r), T = std::max(T, n);
  }
  if (behind.empty()) return;
  const int64_t C = static_cast<int64_t>(behind.size());
  auto in = torch::zeros({C, T}, torch::kInt64);  // [C, T], right-padded
  auto acc = in.accessor<int64_t, 2>();
  std::vector<int64_t> slots, lens;
  for (int64_t r = 0; r < C; ++r) {
    const int64_t from = cache_.length(behind[r]->slot);
    const int64_t n = static_cast<int64_t>(behind[r]->tokens.size()) - from - 1;
    for (int64_t t = 0; t < n; ++t) acc[r][t] = behind[r]->tokens[from + t];
    slots.push_back(behind[r]->slot);
    lens.push_back(n);
    catch_up_tokens_ += n;
  }
  draft_->forward(to_device(in, draft_->device()), slots, cache_, lens, /*last_only=*/true);
}

Proposals DraftProposer::propose(const std::vector<SeqId>& ids, const std::vector<int64_t>& k) {
  if (ids.size() != k.size()) throw Error("propose: ids and k differ in length");
  const auto t0 = std::chrono::steady_clock::now();
  const int64_t B = static_cast<int64_t>(ids.size());
  const int64_t K = B ? *std::max_element(k.begin(), k.end()) : 0;
  const int64_t V = draft_->config().vocab_size;
  std::vector<Seq*> rows(B, nullptr), drafting;
  for (int64_t i = 0; i < B; ++i) {
    if (k[i] < 0) throw Error("propose: negative k");
    if (k[i] == 0) continue;  // not touched: need not be known here
    auto it = seqs_.find(ids[i]);
    if (it == seqs_.end()) throw Error("propose: unknown sequence " + std::to_string(ids[i]));
    if (it->second.proposed_from >= 0)
      throw Error("propose: sequence " + std::to_string(ids[i]) + " has a proposal awaiting commit");
    if (it->second.tokens.empty())
      throw Error("propose: sequence " + std::to_string(ids[i]) + " has no tokens");
    if (k[i] > room(ids[i]))
      throw Error("propose: k = " + std::to_string(k[i]) + " does not fit sequence " + std::to_string(ids[i]));
    rows[i] = &it->second;
    drafting.push_back(rows[i]);
  }
  Proposals out;
  out.start_us = std::chrono::duration<double, std::micro>(t0.time_since_epoch()).count();
  out.ids = ids;
  out.k = k;
  out.host_tokens.assign(B, {});
  auto dev = draft_->device();
  out.probs = torch::zeros({B, K, V}, torch::TensorOptions().dtype(torch::kFloat32).device(dev));
  auto i64 = torch::TensorOptions().dtype(torch::kInt64).device(dev);
  if (K == 0) {
    out.tokens = torch::zeros({B, 0}, i64);
    out.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return out;
  }
  // Rows far behind (new sequences, rounds that did not draft, new weights) catch up first, all
  // in one batched prefill; then every row has at most a step's chunk pending.
  const int64_t before = catch_up_tokens_;
  const auto c0 = std::chrono::steady_clock::now();
  catch_up(drafting, greedy_graph_ && graphs_.enabled() ? 2 : 4);
  out.catch_up_tokens = catch_up_tokens_ - before;
  if (out.catch_up_tokens > 0) {
    out.draft_steps += 1;
    out.catch_up_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - c0).count();
  }
  std::vector<std::vector<int64_t>> pend(B);
  std::vector<int64_t> position(B, 0);  // sequence length before the drafts
  bool all_greedy = true;
  for (int64_t i = 0; i < B; ++i) {
    if (!rows[i]) continue;
    pend[i] = pending(*rows[i]);
    position[i] = static_cast<int64_t>(rows[i]->tokens.size());
    rows[i]->proposed_from = position[i];
    all_greedy = all_greedy && rows[i]->params.greedy();
  }
  // The drafted tokens stay on the device from step to step: step j + 1 feeds step j's draws
  // (gathered there), and the host reads the tokens once, after the last step. A row's draw for
  // the token at position t uses the counter-based uniform of (seed, t): in coupled mode the
  // target's own uniform, else one of the draft's own.
  at::Tensor tokens_dev;  // [B, K]
  const bool one_graph = all_greedy && greedy_graph_fits(rows, k);
  if (one_graph) {
    // Every row drafts K greedily: the K steps are one CUDA graph (GreedyDraftGraph).
    std::vector<int64_t> slots;
    for (auto* r : rows) slots.push_back(r->slot);
    tokens_dev = graphs_.draft_greedy(pend, slots, K).clone();  // the graph's buffer is reused
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
      lens.push_back(j == 0 ? static_cast<int64_t>(pend[i].size()) : 1);
      params.push_back(rows[i]->params);
      const auto& sp = rows[i]->params;
      const auto purpose = sp.mode == SamplingMode::coupled ? DrawPurpose::target : DrawPurpose::draft;
      u.push_back(sp.greedy() ? 0.5 : position_uniform(sp.seed, position[i] + j, purpose));
    }
    at::Tensor in;  // [A, T]
    if (j == 0) {   // the pending chunks, ragged (right-padded)
      int64_t T = 1;
      for (auto i : active) T = std::max<int64_t>(T, pend[i].size());
      in = torch::zeros({A, T}, torch::kInt64);
      auto acc = in.accessor<int64_t, 2>();
      for (int64_t r = 0; r < A; ++r)
        for (size_t t = 0; t < pend[active[r]].size(); ++t) acc[r][t] = pend[active[r]][t];
      in = to_device(in, dev);
    } else {
      in = tokens_dev.select(1, j - 1).index_select(0, active_dev).unsqueeze(1);  // [A, 1]
    }
    // A CUDA graph where available: every step after the first feeds one token per row, the first
    // the pending chunks (two tokens after a round that accepted every draft).
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
  if (all_greedy) {  // q = one-hot at each drawn token, zero past a row's k
    auto valid = prefix_mask(k, K, dev);  // [B, K]
    out.probs.scatter_(2, tokens_dev.unsqueeze(-1), valid.unsqueeze(-1).to(torch::kFloat32));
  }
  // The proposal's one host sync: the drafted tokens. The cache now holds the pending tokens and
  // the draft tokens 1..k-1; `tokens` gets all k until the commit cuts them back.
  out.tokens = tokens_dev;
  auto host = tokens_dev.to(torch::kCPU);
  auto tok_acc = host.accessor<int64_t, 2>();
  for (int64_t i = 0; i < B; ++i) {
    if (!rows[i]) continue;
    for (int64_t j = 0; j < k[i]; ++j) out.host_tokens[i].push_back(tok_acc[i][j]);
    rows[i]->tokens.insert(rows[i]->tokens.end(), out.host_tokens[i].begin(), out.host_tokens[i].end());
  }
  out.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return out;
}

bool DraftProposer::greedy_graph_fits(const std::vector<Seq*>& rows, const std::vector<int64_t>& k) {
  if (!greedy_graph_ || !graphs_.enabled() || rows.empty() || k.front() < 1) return false;
  int64_t first = 1;
  for (auto* r : rows) {
    if (!r) return false;  // a row that does not draft
    first = std::max<int64_t>(first, static_cast<int64_t>(r->tokens.size()) - cache_.length(r->slot));
  }
  if (first > 2) return false;  // longer chunks go step by step
  const int64_t limit = std::min(cache_.max_len(), draft_->config().max_position_embeddings);
  for (size_t i = 0; i < rows.size(); ++i)
    if (k[i] != k.front() || cache_.length(rows[i]->slot) + first + k[i] - 1 > limit) return false;
  return true;
}

void DraftProposer::commit(const Verdict& v) {
  auto it = seqs_.find(v.id);
  if (it == seqs_.end()) throw Error("draft commit: unknown sequence " + std::to_string(v.id));
  Seq& s = it->second;
  if (static_cast<int64_t>(v.emitted.size()) != v.accepted + 1)
    throw Error("draft commit: verdict does not match the proposal");
  if (s.proposed_from < 0) {
    // A round without draft tokens may skip the drafter: its token runs at the next proposal.
    if (v.k != 0) throw Error("draft commit: sequence " + std::to_string(v.id) + " has no proposal");
    s.tokens.push_back(v.emitted.back());
    return;
  }
  const int64_t k = static_cast<int64_t>(s.tokens.size()) - s.proposed_from;
  if (v.accepted < 0 || v.accepted > k || v.k != k)
    throw Error("draft commit: verdict does not match the proposal");
  // The cache ran the pending tokens and d_1..d_{k-1}; keep the sequence and d_1..d_n.
  truncate(s, s.proposed_from + v.accepted);
  s.tokens.push_back(v.emitted.back());
  s.proposed_from = -1;
}

void DraftProposer::set_model(std::shared_ptr<Transformer> draft, bool refresh_cache) {
  draft_ = std::move(draft);
  graphs_.reset(*draft_);  // graphs captured the old weights' memory
  if (refresh_cache) {
    for (auto& [id, s] : seqs_) cache_.truncate(s.slot, 0), ++refreshes_;
  }
}

void DraftProposer::load_weights(const Transformer& weights, bool refresh_cache) {
  draft_->copy_weights_from(weights);  // in place: the graphs read these tensors
  if (refresh_cache) {
    for (auto& [id, s] : seqs_) cache_.truncate(s.slot, 0), ++refreshes_;
  }
}

}  // namespace osd
