#include "actors/buffer.hpp"

#include <chrono>
#include <nlohmann/json.hpp>

#include "actors/messages.hpp"

namespace osd {

namespace {

struct Waiting {
  caf::response_promise promise;
  int64_t n = 0, min_new = 1, route = 0;
  std::chrono::steady_clock::time_point deadline = std::chrono::steady_clock::time_point::max();
};

struct BufferState {
  DistillBuffer buffer;
  std::vector<Waiting> waiting;
  bool ticking = false;
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
          const bool due =
              std::chrono::steady_clock::now() >= it->deadline && st.buffer.new_records() > 0;
          if (st.buffer.new_records() >= it->min_new || due) {
            it->promise.deliver(batch_of(st.buffer, it->n, it->route));
            it = st.waiting.erase(it);
          } else {
            ++it;
          }
        }
      },
      [=](sample_atom, int64_t n, int64_t min_new, int64_t route,
          int64_t wait_ms) -> caf::result<DistillBatch> {
        auto& st = self->state;
        if (st.buffer.new_records() >= min_new) return batch_of(st.buffer, n, route);
        auto rp = self->make_response_promise<DistillBatch>();
        Waiting w{rp, n, min_new, route};
        if (wait_ms > 0) {
          w.deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(wait_ms);
          if (!st.ticking) {
            st.ticking = true;
            self->delayed_send(self, std::chrono::milliseconds(opt.tick_ms), tick_atom_v);
          }
        }
        st.waiting.push_back(std::move(w));
        return rp;
      },
      // Deadlines: a waiting request past its deadline is answered once any record is new.
      [=](tick_atom) {
        auto& st = self->state;
        const auto now = std::chrono::steady_clock::now();
        bool pending_deadline = false;
        for (auto it = st.waiting.begin(); it != st.waiting.end();) {
          if (now >= it->deadline && st.buffer.new_records() > 0) {
            it->promise.deliver(batch_of(st.buffer, it->n, it->route));
            it = st.waiting.erase(it);
          } else {
            pending_deadline |= it->deadline != std::chrono::steady_clock::time_point::max();
            ++it;
          }
        }
        st.ticking = pending_deadline;
        if (st.ticking)
          self->delayed_send(self, std::chrono::milliseconds(opt.tick_ms), tick_atom_v);
      },
      [=](stats_atom) -> std::string {
        auto& b = self->state.buffer;
        return nlohmann::json{{"records", b.size()},    {"heldout", b.heldout_size()},
                              {"bytes", b.bytes()},     {"added", b.added()},
                              {"evicted", b.evicted()}, {"budget_bytes", opt.budget_bytes}}
            .dump();
      },
  };
}

}  // namespace

caf::actor spawn_buffer(caf::actor_system& sys, BufferOptions opt) {
  return sys.spawn(buffer, opt);
}

}  // namespace osd
