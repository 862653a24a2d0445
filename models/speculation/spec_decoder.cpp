#include "models/speculation/spec_decoder.hpp"

#include <torch/torch.h>

#include <chrono>

#include "models/common/error.hpp"

namespace osd {

SpecDecoder::SpecDecoder(std::shared_ptr<Transformer> target, std::shared_ptr<Transformer> draft,
                         SpecOptions options, TokenText token_text)
    : target_(target), opt_(options), token_text_(std::move(token_text)),
      scorer_(target, options.max_batch, options.max_len),
      costs_(options.k_max),
      route_acceptance_(options.k_max, 0.99) {
  if (opt_.k < 0 || opt_.k_max < 0 || opt_.k > 64 || opt_.k_max > 64)
    throw Error("draft length k and k_max must be in [0, 64]");
  if (draft) {
    if (draft->config().vocab_size != target->config().vocab_size)
      throw Error("draft and target vocabularies differ (" + std::to_string(draft->config().vocab_size) +
                  " vs " + std::to_string(target->config().vocab_size) + ")");
    draft_.emplace(draft, options.max_batch, options.max_len);
  }
  // On the CPU the target's passes are timed at every batch bucket first (as the verifier does),
  // so the planner's first prices are measured, not guessed; on a GPU the first rounds measure them.
  if (opt_.adaptive_k && opt_.cost_ratio < 0 && !target->device().is_cuda())
    for (const auto& t : scorer_.calibrate(opt_.k_max, 2000.0)) costs_.observe_verify(t.batch, t.k, t.ms);
  if (opt_.cost_ratio >= 0) {
    cost_ratio_ = opt_.cost_ratio, cost_measured_ = true;
    for (int64_t K = 0; K <= opt_.k_max; ++K) costs_.observe_verify(opt_.max_batch, K, 1.0);
    for (int64_t b = 1; b <= opt_.max_batch; b *= 2) {
      costs_.observe_verify(b, 0, 1.0);
      costs_.observe_verify(b, opt_.k_max, 1.0);
      costs_.observe_draft_step(b, opt_.cost_ratio);
    }
  }
}

void SpecDecoder::add(SeqId id, const GenerationRequest& req) {
  if (active_.count(id) || done_.count(id)) throw Error("duplicate sequence id " + std::to_string(id));
  if (req.prompt.empty()) throw Error("empty prompt");
  if (auto e = req.sampling.validate(); !e.empty()) throw Error(e);
  if (req.max_new_tokens < 1) throw Error("max_new_tokens must be >= 1");
  const int64_t V = target_->config().vocab_size;
  for (auto t : req.prompt)
    if (t < 0 || t >= V) throw Error("prompt token " + std::to_string(t) + " outside the vocabulary");
  StopChecker stop(req, token_text_);  // validates stop strings
  scorer_.add(id, req.prompt);
  if (draft_) {
    try {
      draft_->add(id, req.prompt, req.sampling);
    } catch (...) {
      scorer_.remove(id);
      throw;
    }
  }
  Active a{req, std::move(stop), AcceptanceModel(opt_.k_max, 0.9), {}};
  a.out.id = id;
  active_.emplace(id, std::move(a));
}

void SpecDecoder::cancel(SeqId id) {
  if (active_.count(id)) finish(id, FinishReason::cancelled);
}

void SpecDecoder::finish(SeqId id, FinishReason reason) {
  auto it = active_.find(id);
  auto& a = it->second;
  a.out.finish = reason;
  a.out.tokens = a.stop.tokens();
  a.out.text = a.stop.text();
  total_.merge(a.out.stats);
  scorer_.remove(id);
  if (draft_) draft_->remove(id);
  done_.emplace(id, std::move(a.out));
  active_.erase(it);
}

std::vector<int64_t> SpecDecoder::choose_k(const std::vector<SeqId>& ids, const std::vector<Active*>& rows) {
  std::vector<int64_t> ks(ids.size(), 0);
  if (!draft_) return ks;
  std::vector<PlanRow> plan_rows;
  for (size_t i = 0; i < ids.size(); ++i) {
    // Never draft past max_new_tokens, nor past either cache.
    const int64_t cap = std::max<int64_t>(0, std::min({opt_.adaptive_k ? opt_.k_max : opt_.k,
                                                       rows[i]->stop.remaining() - 1,
                                                       scorer_.room(ids[i]), draft_->room(ids[i])}));
    ks[i] = cap;
    plan_rows.push_back({rows[i]->acceptance.expected_tokens(&route_acceptance_), cap});
  }
  if (opt_.adaptive_k) ks = plan_round(plan_rows, costs_).k;
  return ks;
}

RoundResult SpecDecoder::step() {
  RoundResult r;
  if (active_.empty()) return r;
  std::vector<SeqId> ids;
  std::vector<Active*> rows;
  for (auto& [id, a] : active_) ids.push_back(id), rows.push_back(&a);
  const auto ks = choose_k(ids, rows);
  const int64_t B = static_cast<int64_t>(ids.size());
  const int64_t V = target_->config().vocab_size;
  auto t0 = std::chrono::steady_clock::now();
  // k = 0 rows are not touched by the drafter; a round where every row is at k = 0 skips it.
  const bool drafts = std::any_of(ks.begin(), ks.end(), [](int64_t k) { return k > 0; });
  Proposals prop = drafts ? draft_->propose(ids, ks) : Proposals::none(ids, ks, V, target_->device());
  auto t1 = std::chrono::steady_clock::now();
  std::vector<SamplingParams> params;
  for (auto* a : rows) params.push_back(a->request.sampling);
  auto round = run_spec_round(scorer_, prop, params, false, opt_.rule);
  auto t2 = std::chrono::steady_clock::now();
  r.draft_seconds = std::chrono::duration<double>(t1 - t0).count();
  r.target_seconds = std::chrono::duration<double>(t2 - t1).count();
  draft_seconds_ += r.draft_seconds;
  target_seconds_ += r.target_seconds;
  const int64_t K = prop.tokens.defined() && prop.tokens.dim() == 2 ? prop.tokens.size(1) : 0;
  if (opt_.cost_ratio < 0 && !round.captured_graph) {
    costs_.observe_verify(B, K, r.target_seconds * 1e3);
    // A catch-up prefill (rows the drafter had not seen, or not for a while) is priced per token,
    // apart from the steps, as the verifier does.
    const int64_t steps = prop.draft_steps - (prop.catch_up_tokens > 0 ? 1 : 0);
    if (prop.catch_up_tokens > 0) costs_.observe_catch_up(prop.catch_up_tokens, prop.catch_up_seconds * 1e3);
    if (steps > 0) {
      const int64_t drafting = std::count_if(ks.begin(), ks.end(), [](int64_t k) { return k > 0; });
      const double step_seconds = std::max(0.0, r.draft_seconds - prop.catch_up_seconds) / steps;
      costs_.observe_draft_step(drafting, step_seconds * 1e3);
      // c = one draft step / one target pass, smoothed over rounds.
      const double c = step_seconds / std::max(r.target_seconds, 1e-9);
      cost_ratio_ = cost_measured_ ? 0.9 * cost_ratio_ + 0.1 * c : c;
      cost_measured_ = true;
    }
  }
  r.target_logits = round.logits;
  r.target_probs = round.verified.target_probs;
  for (int64_t i = 0; i < B; ++i) {
    Verdict& v = round.verified.verdicts[i];
    if (draft_) draft_->commit(v);
    Active& a = *rows[i];
    a.out.stats.record(v);
    if (v.k > 0) a.acceptance.observe(v.k, v.accepted), route_acceptance_.observe(v.k, v.accepted);
    const size_t kept = a.stop.feed(v.emitted);
    r.kept.emplace_back(v.emitted.begin(), v.emitted.begin() + kept);
    r.verdicts.push_back(std::move(v));
    if (a.stop.finished() != FinishReason::none) r.finished.push_back(ids[i]);
  }
  for (auto id : r.finished) finish(id, active_.at(id).stop.finished());
  return r;
}

std::optional<SequenceOutput> SpecDecoder::take(SeqId id) {
  auto it = done_.find(id);
  if (it == done_.end()) return std::nullopt;
  auto out = std::move(it->second);
  done_.erase(it);
  return out;
}

std::vector<SequenceOutput> SpecDecoder::generate(const std::vector<GenerationRequest>& requests) {
  std::deque<int64_t> waiting;
  for (size_t i = 0; i < requests.size(); ++i) waiting.push_back(static_cast<int64_t>(i));
  const SeqId base = 1'000'000'000;  // ids of this call; assumes no caller uses this range
  while (!waiting.empty() || !idle()) {
    while (!waiting.empty() && can_add()) {
      add(base + waiting.front(), requests[waiting.front()]);
      waiting.pop_front();
    }
    step();
  }
  std::vector<SequenceOutput> outs;
  for (size_t i = 0; i < requests.size(); ++i) {
    auto o = take(base + static_cast<SeqId>(i));
    o->id = static_cast<SeqId>(i);
    outs.push_back(std::move(*o));
  }
  return outs;
}

}  // namespace osd
