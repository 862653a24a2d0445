#include "models/speculation/scorer.hpp"

#include <torch/torch.h>

#include <algorithm>
#include <chrono>

#include "models/common/error.hpp"

namespace osd {

TargetScorer::TargetScorer(std::shared_ptr<Transformer> target, int64_t num_slots, int64_t max_len)
    : target_(std::move(target)), cache_(target_->make_cache(num_slots, max_len)), graphs_(*target_, cache_) {}

void TargetScorer::add(SeqId id, const std::vector<int64_t>& prompt, at::Tensor* prompt_logits,
                       int64_t logit_positions) {
  begin(id, prompt);
  try {
    prefill(id, static_cast<int64_t>(prompt.size()), prompt_logits, logit_positions);
  } catch (...) {
    remove(id);
    throw;
  }
}

void TargetScorer::begin(SeqId id, const std::vector<int64_t>& prompt) {
  if (prompt.empty()) throw Error("target: empty prompt");
  if (seqs_.count(id)) throw Error("target: sequence " + std::to_string(id) + " already present");
  const int64_t limit = std::min(cache_.max_len(), target_->config().max_position_embeddings);
  if (static_cast<int64_t>(prompt.size()) >= limit)
    throw Error("prompt of " + std::to_string(prompt.size()) + " tokens leaves no room to generate (context " +
                std::to_string(limit) + ")");
  const int64_t slot = target_->prefill_slot(cache_, {});
  Seq s{slot, prompt.back()};
  s.to_prefill.assign(prompt.begin(), prompt.end() - 1);
  seqs_.emplace(id, std::move(s));
}

int64_t TargetScorer::prefill(SeqId id, int64_t max_tokens, at::Tensor* prompt_logits,
                              int64_t logit_positions) {
  auto it = seqs_.find(id);
  if (it == seqs_.end()) throw Error("prefill: unknown sequence " + std::to_string(id));
  Seq& s = it->second;
  const int64_t n = std::min<int64_t>(std::max<int64_t>(max_tokens, 1), s.to_prefill.size());
  if (n == 0) return 0;
  std::vector<int64_t> chunk(s.to_prefill.begin(), s.to_prefill.begin() + n);
  const bool last = n == static_cast<int64_t>(s.to_prefill.size());
  const bool want = last && prompt_logits;
  auto out = target_->forward(torch::tensor(chunk).view({1, -1}), {s.slot}, cache_, {},
                              /*last_only=*/!want, want ? logit_positions : 0);  // [1, n or m, V]
  if (want) *prompt_logits = out[0];
  s.to_prefill.erase(s.to_prefill.begin(), s.to_prefill.begin() + n);
  return static_cast<int64_t>(s.to_prefill.size());
}

int64_t TargetScorer::unprefilled(SeqId id) const {
  return static_cast<int64_t>(seqs_.at(id).to_prefill.size());
}

void TargetScorer::remove(SeqId id) {
  auto it = seqs_.find(id);
  if (it == seqs_.end()) return;
  cache_.free_slot(it->second.slot);
  seqs_.erase(it);
}

int64_t TargetScorer::room(SeqId id) const {
  const auto& s = seqs_.at(id);
  const int64_t limit = std::min(cache_.max_len(), target_->config().max_position_embeddings);
  return std::max<int64_t>(-1, limit - cache_.length(s.slot) - 1);
}

int64_t TargetScorer::length(SeqId id) const {
  const auto& s = seqs_.at(id);
  return cache_.length(s.slot) + static_cast<int64_t>(s.to_prefill.size()) + 1;
}

at::Tensor TargetScorer::score(const Proposals& p) {
  const int64_t B = static_cast<int64_t>(p.ids.size());
  if (B == 0) throw Error("score: empty batch");
  const int64_t K = p.tokens.defined() ? p.tokens.size(1) : 0;
  auto in = torch::zeros({B, K + 1}, torch::kInt64);
  auto acc = in.accessor<int64_t, 2>();
  std::vector<int64_t> slots(B), lens(B);
  for (int64_t i = 0; i < B; ++i) {
    auto it = seqs_.find(p.ids[i]);
    if (it == seqs_.end()) throw Error("score: unknown sequence " + std::to_string(p.ids[i]));
    Seq& s = it->second;
    if (!s.to_prefill.empty())
      throw Error("score: sequence " + std::to_string(p.ids[i]) + " is still being prefilled");
    if (p.k[i] > room(p.ids[i]))
      throw Error("score: " + std::to_string(p.k[i]) + " draft tokens do not fit sequence " +
                  std::to_string(p.ids[i]));
    acc[i][0] = s.pending;
    for (int64_t j = 0; j < p.k[i]; ++j) acc[i][j + 1] = p.host_tokens[i][j];
    slots[i] = s.slot;
    lens[i] = p.k[i] + 1;
  }
  for (int64_t i = 0; i < B; ++i) {
    Seq& s = seqs_.at(p.ids[i]);
    s.length_before = cache_.length(s.slot);
  }
  auto logits = graphs_.forward(in, slots, lens);  // [B, K + 1, V]; eager where graphs are off
  for (int64_t i = 0; i < B; ++i) seqs_.at(p.ids[i]).scored = p.k[i];
  return logits;
}

void TargetScorer::commit(const Verdict& v) {
  auto it = seqs_.find(v.id);
  if (it == seqs_.end()) throw Error("target commit: unknown sequence " + std::to_string(v.id));
  Seq& s = it->second;
  if (s.scored < 0 || v.accepted < 0 || v.accepted > s.scored ||
      static_cast<int64_t>(v.emitted.size()) != v.accepted + 1)
    throw Error("target commit: verdict does not match the scored proposal");
  cache_.truncate(s.slot, s.length_before + 1 + v.accepted);  // pending + accepted drafts
  s.pending = v.emitted.back();
  s.scored = -1;
}

std::vector<TargetScorer::Timing> TargetScorer::calibrate(int64_t k_max, double budget_ms) {
  using Clock = std::chrono::steady_clock;
  const auto start = Clock::now();
  auto spent = [&] { return std::chrono::duration<double, std::milli>(Clock::now() - start).count(); };
  torch::NoGradGuard no_grad;
  std::vector<Timing> out;
  const int64_t limit = std::min(cache_.max_len(), target_->config().max_position_embeddings);
  for (int64_t B = 1; B <= free_slots() && spent() < budget_ms; B *= 2) {
    std::vector<int64_t> slots;
    for (int64_t i = 0; i < B; ++i) slots.push_back(target_->prefill_slot(cache_, {0}));
    for (int64_t T : {int64_t{1}, k_max + 1}) {
      if (1 + 2 * T > limit || spent() >= budget_ms) break;
      auto tokens = torch::zeros({B, T}, torch::kInt64);
      target_->forward(tokens, slots, cache_);  // warm-up
      for (auto s : slots) cache_.truncate(s, 1);
      const auto t0 = Clock::now();
      target_->forward(tokens, slots, cache_);
      out.push_back({B, T - 1, std::chrono::duration<double, std::milli>(Clock::now() - t0).count()});
      for (auto s : slots) cache_.truncate(s, 1);
    }
    for (auto s : slots) cache_.free_slot(s);
  }
  return out;
}

}  // namespace osd
