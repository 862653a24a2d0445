#pragma once
// The proposer role: the draft model proposes up to k tokens for each sequence of a batch.
//
// Per sequence the proposer keeps `tokens`, the sequence as it knows it (after a proposal, with
// that proposal's draft tokens at the end), and the cache holds a prefix of them; the rest are
// pending (usually the last emitted token; two after a round in which every draft token was
// accepted; many after rounds that did not draft, or after new weights). propose() first runs
// long pending runs of every row as one batched prefill (the catch-up), then one token per step;
// commit() / sync() cut `tokens` back to what the target verified and append what it emitted.
//
// A caller that does not involve the drafter in every round (the verifier actor, whose rounds at
// k = 0 never reach the drafter) keeps its own count of the tokens the drafter holds and sends
// them with the next proposal (DraftSync): `known` tokens are right, `tail` follows them.
#include <ATen/core/Tensor.h>

#include <memory>
#include <unordered_map>
#include <vector>

#include "models/core/decode_graph.hpp"
#include "models/core/kv_cache.hpp"
#include "models/speculation/spec_types.hpp"
#include "models/core/transformer.hpp"

namespace osd {

class DraftProposer {
 public:
  // The draft stays owned by the caller and must outlive the proposer.
  DraftProposer(std::shared_ptr<Transformer> draft, int64_t num_slots, int64_t max_len);

  // Prefills prompt[0 .. n-2]; prompt.back() becomes pending. Throws when full or too long.
  void add(SeqId id, const std::vector<int64_t>& prompt, const SamplingParams& params);
  // Brings a sequence up to date without running anything: its first `known` tokens are kept,
  // `tail` follows them (a sequence not seen before starts empty: known must be 0). The cache
  // keeps what it holds of the kept tokens; the rest run at the next proposal. Throws when
  // `known` exceeds what the proposer holds, or no slot is free.
  void sync(const DraftSync& s);
  void remove(SeqId id);
  bool has(SeqId id) const { return seqs_.count(id) != 0; }
  size_t size() const { return seqs_.size(); }
  // Most draft tokens that still fit this sequence's cache and the draft's context.
  int64_t room(SeqId id) const;

  // ids[i] proposes k[i] tokens (0 allowed; a row with k = 0 need not be known and is not
  // touched). Returns tokens [B, K] and q [B, K, V].
  Proposals propose(const std::vector<SeqId>& ids, const std::vector<int64_t>& k);
  // Roll back to the accepted prefix (v.emitted = accepted draft tokens + next token). A verdict
  // with k = 0 for a sequence without a proposal appends its token (it runs at the next proposal).
  void commit(const Verdict& v);
  // Tokens of the sequence the proposer holds (draft tokens of a proposal awaiting commit included).
  int64_t known(SeqId id) const;
  // The draft's prefill and scoring shapes, run once on the calling thread
  // (Transformer::warm_attention_plans).
  int64_t warm_attention_plans() { return draft_->warm_attention_plans(cache_, true); }

  // Swap in new weights (same shape). With refresh_cache, every sequence's cached keys/values
  // are dropped and recomputed with the new weights at its next proposal (in its catch-up), so
  // proposals come from the new draft alone; without it the old keys/values stay as
  // approximations. Either way the accept rule keeps the output exact whatever q is.
  void set_model(std::shared_ptr<Transformer> draft, bool refresh_cache = true);
  // The same with new weights copied into the draft the proposer already runs (same shapes): its
  // CUDA graphs read those tensors and stay valid, where set_model must capture them again.
  // Only for a draft the proposer's owner does not share.
  void load_weights(const Transformer& weights, bool refresh_cache = true);
  int64_t refreshes() const { return refreshes_; }
  // Tokens run by catch-up prefills so far (pending runs longer than a step's chunk).
  int64_t catch_up_tokens() const { return catch_up_tokens_; }
  size_t greedy_draft_graphs() const { return graphs_.greedy_draft_graphs(); }  // captured so far
  const Transformer& model() const { return *draft_; }

 private:
  struct Seq {
    int64_t slot = 0;
    std::vector<int64_t> tokens;  // the sequence as known here (+ the awaiting proposal's drafts)
    SamplingParams params;
    int64_t proposed_from = -1;   // tokens before the awaiting proposal's drafts, -1: none
  };
  // The tokens not in the cache: tokens[cache length ..] (at least the last one).
  std::vector<int64_t> pending(Seq& s);
  // Runs every row's pending tokens but the last as one ragged prefill (rows with more than
  // `longest_step` pending tokens).
  void catch_up(const std::vector<Seq*>& rows, int64_t longest_step);
  void truncate(Seq& s, int64_t keep);  // tokens and cache cut to `keep` tokens
  // Whether this proposal's steps can run as one GreedyDraftGraph: graphs on, every row drafting
  // the same k >= 1 from a pending chunk of at most 2 tokens with room for the padded chunk.
  bool greedy_graph_fits(const std::vector<Seq*>& rows, const std::vector<int64_t>& k);
  bool greedy_graph_ = true;  // OSD_GREEDY_DRAFT_GRAPH=0 at construction: step-by-step graphs
  int64_t refreshes_ = 0, catch_up_tokens_ = 0;
  std::shared_ptr<Transformer> draft_;
  KVCache cache_;
  GraphCache graphs_;  // CUDA graphs of the one-token steps (models/core/decode_graph.hpp)
  std::unordered_map<SeqId, Seq> seqs_;
};

}  // namespace osd
