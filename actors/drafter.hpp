#pragma once
// drafter: owns one draft model (its own copy) and its DraftProposer (KV cache, per-sequence
// pending tokens, CUDA graphs).
//   (propose_atom, ProposeRequest)              -> Proposals  syncs its rows, then drafts: rows
//                                                            far behind catch up in one prefill
//   (remove_atom, SeqId)                        -> void       frees the sequence's slot
//   (swap_atom, WeightsSnapshot)                new weights from the next proposal
//   (trace_atom)                                -> string   GPU spans (Chrome events; "[]" on the CPU)
// On CUDA it runs on a stream of its own; each Proposals carries a mark of that stream (ready).
// An exception escaping a handler kills the actor; the verifier monitors it and respawns it.
#include <caf/fwd.hpp>

#include <cstdint>
#include <memory>

namespace osd {

class Transformer;

struct DrafterOptions {
  int64_t num_slots = 64;
  int64_t max_len = 2048;
  int64_t fail_on_proposal = -1;  // tests: throw (uncaught) on this proposal, 1-based; -1 never
  int64_t version = 0;            // version of the weights it starts with
  bool trace = false;             // record CUDA events per proposal (GPU trace)
  // CUDA: draft on the GPU's multiprocessors outside the distillers' share of this many (the rest
  // of their green-context split); 0: the whole GPU.
  int beside_multiprocessors = 0;
  // CUDA: build the attention plans of every prefill and scoring shape on this actor's thread
  // before serving (Transformer::warm_attention_plans).
  bool warm_attention_plans = true;
};

caf::actor spawn_drafter(caf::actor_system& sys, std::shared_ptr<Transformer> draft, DrafterOptions opt);

}  // namespace osd
