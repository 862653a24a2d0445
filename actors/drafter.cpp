#include "actors/drafter.hpp"

#include <torch/torch.h>

#include "actors/messages.hpp"
#include "models/core/device_stream.hpp"
#include "models/speculation/proposer.hpp"

namespace osd {

namespace {

struct DrafterState {
  std::unique_ptr<ActorStream> stream;  // first: destroyed after the tensors made on it
  std::unique_ptr<DraftProposer> proposer;
  std::unique_ptr<GpuTimeline> timeline;  // GPU spans of its proposals (opt.trace)
  int64_t proposals = 0;
  int64_t version = 0;
  static inline const char* name = "osd.drafter";
};

caf::error as_error(const std::exception& e) { return caf::make_error(caf::sec::runtime_error, e.what()); }

caf::behavior drafter(caf::stateful_actor<DrafterState>* self, std::shared_ptr<Transformer> draft,
                      DrafterOptions opt) {
  self->state.version = opt.version;
  self->state.stream =
      std::make_unique<ActorStream>(draft->device(), ActorStream::Priority::serving,
                                    opt.beside_multiprocessors, ActorStream::Side::rest);
  self->state.timeline = std::make_unique<GpuTimeline>(
      opt.trace ? draft->device() : c10::Device(c10::kCPU), "drafter");
  self->state.stream->run_on(
      [&] {  // the cache and the drafter's own copy of the weights are made on it
        // Its own copy: new snapshots are copied into it in place, so captured CUDA graphs stay
        // valid.
        auto own = draft->clone(draft->device(), draft->dtype());
        self->state.proposer =
            std::make_unique<DraftProposer>(std::move(own), opt.num_slots, opt.max_len);
        if (opt.warm_attention_plans && draft->device().is_cuda())
          self->state.proposer->warm_attention_plans();
      });
  return {
      // Brings each drafting row up to date (DraftSync), then proposes. A row with k = 0 is not
      // touched. A bad sync or proposal answers an error (the verifier runs the round again
      // after resyncing the route); an injected failure kills the actor.
      [=](propose_atom, const ProposeRequest& req) -> caf::result<Proposals> {
        if (++self->state.proposals == opt.fail_on_proposal)
          throw std::runtime_error("injected drafter failure");
        auto& st = self->state;
        st.stream->make_current();
        try {
          const size_t span = st.timeline->begin();
          const int64_t caught_up = st.proposer->catch_up_tokens();
          for (const auto& sync : req.syncs) st.proposer->sync(sync);
          auto p = st.proposer->propose(req.ids, req.k);
          p.draft_version = st.version;
          st.timeline->end(span, "propose",
                           "{\"batch\":" + std::to_string(req.ids.size()) + ",\"catch_up\":" +
                               std::to_string(st.proposer->catch_up_tokens() - caught_up) + "}");
          p.ready = st.stream->mark();  // the verifier's stream waits for this, not the host
          return p;
        } catch (const std::exception& e) {
          return as_error(e);
        }
      },
      [=](remove_atom, SeqId id) { self->state.proposer->remove(id); },
      [=](trace_atom) -> std::string { return self->state.timeline->chrome_events(); },
      // How often this draft's greedy choice equals tokens[t] for t >= from (the router's
      // evaluation of which draft fits a finished request best). Reads the weights only.
      [=](score_atom, const std::vector<int64_t>& tokens, int64_t from) -> caf::result<double> {
        self->state.stream->make_current();
        const size_t span = self->state.timeline->begin();
        try {
          auto& model = const_cast<Transformer&>(self->state.proposer->model());
          const int64_t limit = model.config().max_position_embeddings;
          int64_t start = std::max<int64_t>(0, static_cast<int64_t>(tokens.size()) - limit);
          from = std::max(from, start + 1);
          if (from >= static_cast<int64_t>(tokens.size())) return 0.0;
          torch::NoGradGuard g;
          auto t = torch::tensor(std::vector<int64_t>(tokens.begin() + start, tokens.end()),
                                 torch::kInt64)
                       .view({1, -1});
          t = to_device(t, model.device());
          auto pred = model.forward_full(t)[0].argmax(-1);  // [T]
          const int64_t T = t.size(1), n = static_cast<int64_t>(tokens.size()) - from;
          auto hits = pred.narrow(0, T - n - 1, n).eq(t[0].narrow(0, T - n, n));  // [n]
          const double agreement = hits.to(torch::kFloat64).mean().item<double>();
          self->state.timeline->end(span, "score", "{\"tokens\":" + std::to_string(T) + "}");
          return agreement;
        } catch (const std::exception& e) {
          return as_error(e);
        }
      },
      // New weights between steps: the immutable snapshot is copied into the drafter's own weights
      // (a device copy; its CUDA graphs stay valid) and the sequences' caches are recomputed.
      [=](swap_atom, const WeightsSnapshot& snap) {
        if (!snap.model || snap.version <= self->state.version) return;
        self->state.stream->make_current();
        const size_t span = self->state.timeline->begin();
        self->state.proposer->load_weights(*snap.model);
        self->state.version = snap.version;
        self->state.timeline->end(span, "swap",
                                  "{\"version\":" + std::to_string(snap.version) + "}");
      },
  };
}

}  // namespace

caf::actor spawn_drafter(caf::actor_system& sys, std::shared_ptr<Transformer> draft, DrafterOptions opt) {
  return sys.spawn<caf::detached>(drafter, std::move(draft), opt);
}

}  // namespace osd
