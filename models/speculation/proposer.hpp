#pragma once
// The proposer role: the draft model proposes up to k tokens for each sequence of a batch.
//
// Cache invariant, per sequence: draft cache + pending == the sequence so far. `pending` holds
// the tokens the draft has not yet run (usually the last emitted token; two after a round in
// which every draft token was accepted; more after rounds with k = 0). propose() runs the
// pending tokens as one ragged chunk, then one token per step; commit() truncates the cache back
// to the accepted prefix and queues what the draft has not seen.
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
  void remove(SeqId id);
  bool has(SeqId id) const { return seqs_.count(id) != 0; }
  size_t size() const { return seqs_.size(); }
  // Most draft tokens that still fit this sequence's cache and the draft's context.
  int64_t room(SeqId id) const;

  // ids[i] proposes k[i] tokens (0 allowed). Returns tokens [B, K] and q [B, K, V].
  Proposals propose(const std::vector<SeqId>& ids, const std::vector<int64_t>& k);
  // Roll back to the accepted prefix (v.emitted = accepted draft tokens + next token).
  void commit(const Verdict& v);
  // The draft's prefill and scoring shapes, run once on the calling thread
  // (Transformer::warm_attention_plans).
  int64_t warm_attention_plans() { return draft_->warm_attention_plans(cache_, true); }

  // Swap in new weights (same shape). With refresh_cache, every sequence's cached keys/values
  // are recomputed with the new weights (now, or after the commit of a proposal in flight), so
  // proposals come from the new draft alone; without it the old keys/values stay as
  // approximations. Either way the accept rule keeps the output exact whatever q is.
  void set_model(std::shared_ptr<Transformer> draft, bool refresh_cache = true);
  // The same with new weights copied into the draft the proposer already runs (same shapes): its
  // CUDA graphs read those tensors and stay valid, where set_model must capture them again.
  // Only for a draft the proposer's owner does not share.
  void load_weights(const Transformer& weights, bool refresh_cache = true);
  int64_t refreshes() const { return refreshes_; }
  size_t greedy_draft_graphs() const { return graphs_.greedy_draft_graphs(); }  // captured so far
  const Transformer& model() const { return *draft_; }

 private:
  struct Seq {
    int64_t slot = 0;
    std::vector<int64_t> pending;
    SamplingParams params;
    RequestRng rng;
    int64_t length_before = 0;   // cache length when the last proposal started
    int64_t proposed = -1;       // k of the proposal awaiting commit, -1: none
    std::vector<int64_t> drafts; // the proposal awaiting commit
    std::vector<int64_t> cached; // the tokens in the cache (for refreshes)
    std::vector<int64_t> run;    // tokens the proposal awaiting commit ran through the cache
    bool stale = false;          // refresh after the commit of the proposal in flight
  };
  void refresh(Seq& s);
  void refresh_all();
  // Whether this proposal's steps can run as one GreedyDraftGraph: graphs on, every row drafting
  // the same k >= 1 from a pending chunk of at most 2 tokens with room for the padded chunk.
  bool greedy_graph_fits(const std::vector<Seq*>& rows, const std::vector<int64_t>& k) const;
  bool greedy_graph_ = true;  // OSD_GREEDY_DRAFT_GRAPH=0 at construction: step-by-step graphs
  int64_t refreshes_ = 0;
  std::shared_ptr<Transformer> draft_;
  KVCache cache_;
  GraphCache graphs_;  // CUDA graphs of the one-token steps (models/core/decode_graph.hpp)
  std::unordered_map<SeqId, Seq> seqs_;
};

}  // namespace osd
