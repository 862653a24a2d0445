#include "actors/buffer.hpp"

#include <nlohmann/json.hpp>

#include "actors/messages.hpp"

namespace osd {

namespace {

struct Waiting {
  caf::response_promise promise;
  int64_t n = 0, min_new = 1, route = 0;
};

struct BufferState {
  DistillBuffer buffer;
  std::vector<Waiting> waiting;
  static inline const char* name = "osd.buffer";
};

DistillBatch batch_of(DistillBuffer& b, int64_t n, int64_t route) {
  DistillBatch out;
  // Half new records, half replay of the whole buffer.
  out.train = b.take_batch(static_cast<size_t>(n), 0.5, static_cast<uint64_t>(b.added()));
  out.heldout = b.heldout(route);
  return out;
}

caf::behavior buffer(caf::stateful_actor<BufferState>* self, BufferOptions opt) {
  self->state.buffer = DistillBuffer({opt.budget_bytes, opt.heldout_every, opt.heldout_max});
  return {
    [=](records_atom, std::vector<DistillRecord>& records) {
      auto& st = self->state;
      for (auto& r : records) st.buffer.add(std::move(r));
      for (auto it = st.waiting.begin(); it != st.waiting.end();) {
        if (st.buffer.new_records() >= it->min_new) {
          it->promise.deliver(batch_of(st.buffer, it->n, it->route));
          it = st.waiting.erase(it);
        } else {
          ++it;
        }
      }
    },
    [=](sample_atom, int64_t n, int64_t min_new, int64_t route) -> caf::result<DistillBatch> {
      auto& st = self->state;
      if (st.buffer.new_records() >= min_new) return batch_of(st.buffer, n, route);
      auto rp = self->make_response_promise<DistillBatch>();
      st.waiting.push_back({rp, n, min_new, route});
      return rp;
    },
    [=](stats_atom) -> std::string {
      auto& b = self->state.buffer;
      return nlohmann::json{{"records", b.size()}, {"heldout", b.heldout_size()}, {"bytes", b.bytes()},
                            {"added", b.added()}, {"evicted", b.evicted()}, {"budget_bytes", opt.budget_bytes}}
          .dump();
    },
  };
}

}  // namespace

caf::actor spawn_buffer(caf::actor_system& sys, BufferOptions opt) { return sys.spawn(buffer, opt); }

}  // namespace osd
