#include "models/speculation/spec_types.hpp"

#include <torch/torch.h>

namespace osd {

const char* finish_reason_name(FinishReason r) {
  switch (r) {
    case FinishReason::none: return "none";
    case FinishReason::length: return "length";
    case FinishReason::eos: return "eos";
    case FinishReason::stop: return "stop";
    case FinishReason::cancelled: return "cancelled";
    case FinishReason::error: return "error";
  }
  return "?";
}

void SpecStats::merge(const SpecStats& o) {
  num_drafts += o.num_drafts;
  num_draft_tokens += o.num_draft_tokens;
  num_accepted_tokens += o.num_accepted_tokens;
  num_rounds += o.num_rounds;
  num_rejected_drafts += o.num_rejected_drafts;
  if (accepted_per_pos.size() < o.accepted_per_pos.size()) accepted_per_pos.resize(o.accepted_per_pos.size());
  for (size_t i = 0; i < o.accepted_per_pos.size(); ++i) accepted_per_pos[i] += o.accepted_per_pos[i];
}

void SpecStats::record(const Verdict& v) {
  ++num_rounds;
  if (v.k <= 0) return;
  ++num_drafts;
  num_draft_tokens += v.k;
  num_accepted_tokens += v.accepted;
  num_rejected_drafts += v.accepted < v.k;
  if (static_cast<int64_t>(accepted_per_pos.size()) < v.k) accepted_per_pos.resize(v.k);
  for (int64_t j = 0; j < v.accepted; ++j) ++accepted_per_pos[j];
}

Proposals Proposals::none(std::vector<SeqId> ids, std::vector<int64_t> k, int64_t vocab, c10::Device device) {
  Proposals p;
  const int64_t B = static_cast<int64_t>(ids.size());
  p.tokens = torch::zeros({B, 0}, torch::kInt64);
  p.probs = torch::zeros({B, 0, vocab}, torch::TensorOptions().device(device));
  p.host_tokens.assign(ids.size(), {});
  p.ids = std::move(ids);
  p.k = std::move(k);
  return p;
}

Proposals Proposals::select(const std::vector<size_t>& rows) const {
  Proposals p = *this;
  p.ids.clear(), p.k.clear(), p.host_tokens.clear();
  std::vector<int64_t> index;
  for (auto r : rows) {
    p.ids.push_back(ids.at(r));
    p.k.push_back(k.at(r));
    p.host_tokens.push_back(host_tokens.at(r));
    index.push_back(static_cast<int64_t>(r));
  }
  auto at = torch::tensor(index, torch::kInt64);
  if (tokens.defined()) p.tokens = tokens.index_select(0, at.to(tokens.device()));
  if (probs.defined()) p.probs = probs.index_select(0, at.to(probs.device()));
  // Only the longest remaining proposal's width is needed; the padding stays (rows past k are 0).
  return p;
}

}  // namespace osd
