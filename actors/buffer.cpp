#include "actors/buffer.hpp"

#include <algorithm>
#include <chrono>
#include <nlohmann/json.hpp>

#include "actors/messages.hpp"
#include "models/core/device_stream.hpp"
#include "models/common/files.hpp"
#include "models/common/log.hpp"

namespace osd {

namespace {

struct Waiting {
  caf::response_promise promise;
  int64_t n = 0, min_new = 1, route = 0;
  std::chrono::steady_clock::time_point deadline = std::chrono::steady_clock::time_point::max();
};

struct BufferState {
  std::unique_ptr<ActorStream> stream;  // where a round's top-k is taken (a no-op on the CPU)
  DistillBuffer buffer;
  int64_t restored = 0;       // held-out records read back from state_dir at start
  std::string restore_error;  // why they could not be (then nothing is saved over the file)
  std::string restore_warning;  // the newest file was damaged and the previous one was read
  std::vector<Waiting> waiting;
  bool ticking = false;
  int64_t records_messages = 0;  // for BufferOptions::fail_on_records
  static inline const char* name = "osd.buffer";
};

DistillBatch batch_of(DistillBuffer& b, int64_t n, int64_t route) {
  DistillBatch out;
  // Half new records, half replay of the whole buffer.
  out.train = b.take_batch(static_cast<size_t>(n), 0.5, static_cast<uint64_t>(b.added()));
  out.heldout = b.heldout(route);
  return out;
}

// Answers every waiting sample request that is ready: min_new records are new, or its deadline
// has passed and any record is new.
void deliver_ready(BufferState& st) {
  const auto now = std::chrono::steady_clock::now();
  for (auto it = st.waiting.begin(); it != st.waiting.end();) {
    const int64_t fresh = st.buffer.new_records();
    if (fresh >= it->min_new || (now >= it->deadline && fresh > 0)) {
      it->promise.deliver(batch_of(st.buffer, it->n, it->route));
      it = st.waiting.erase(it);
    } else {
      ++it;
    }
  }
}

caf::behavior buffer(caf::stateful_actor<BufferState>* self, BufferOptions opt) {
  self->state.buffer =
      DistillBuffer({opt.budget_bytes, opt.heldout_every, opt.heldout_max, opt.replay_requests});
  self->state.stream = std::make_unique<ActorStream>(opt.device, ActorStream::Priority::background,
                                                     opt.multiprocessors);
  const std::string heldout_file = opt.state_dir.empty() ? "" : opt.state_dir + "/heldout.bin";
  if (!heldout_file.empty() &&
      (files::exists(heldout_file) || files::exists(files::previous_of(heldout_file)))) {
    try {
      auto loaded = load_newest_records(heldout_file);
      self->state.restored = static_cast<int64_t>(loaded.records.size());
      self->state.restore_warning = loaded.warning;
      self->state.buffer.restore_heldout(std::move(loaded.records));
      if (!loaded.warning.empty()) log::warn("buffer: " + loaded.warning);
      log::info(log::cat("buffer: restored ", self->state.restored, " held-out records from ",
                         loaded.from));
    } catch (const std::exception& e) {
      self->state.restore_error = e.what();
      log::error(log::cat("buffer: the held-out slice starts empty and ", heldout_file,
                          " is left as it is: ", e.what()));
    }
  }
  return {
      [=](records_atom, std::vector<DistillRecord>& records) {
        auto& st = self->state;
        for (auto& r : records) st.buffer.add(std::move(r));
        deliver_ready(st);
      },
      // A verification round's records, built here rather than in the verifier's round.
      [=](records_atom, RecordSource& source) {
        auto& st = self->state;
        if (++st.records_messages == opt.fail_on_records)
          throw std::runtime_error("injected buffer failure");
        try {
          std::vector<DistillRecord> made;
          st.stream->run_on([&] { made = make_records(source); });
          source.logits = at::Tensor();  // freed here, after the copy above waited for it
          for (auto& r : made) st.buffer.add(std::move(r));
        } catch (const std::exception& e) {
          log::warn(log::cat("buffer: dropped a round's records: ", e.what()));
          return;
        }
        deliver_ready(st);
      },
      [=](sample_atom, int64_t n, int64_t min_new, int64_t route,
          int64_t wait_ms) -> caf::result<DistillBatch> {
        auto& st = self->state;
        // One waiting request per route: a distiller asks again when its request times out, and
        // the older request's asker no longer listens.
        st.waiting.erase(std::remove_if(st.waiting.begin(), st.waiting.end(),
                                        [&](const Waiting& w) { return w.route == route; }),
                         st.waiting.end());
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
        deliver_ready(st);
        bool pending_deadline = false;
        for (const auto& w : st.waiting)
          pending_deadline |= w.deadline != std::chrono::steady_clock::time_point::max();
        st.ticking = pending_deadline;
        if (st.ticking)
          self->delayed_send(self, std::chrono::milliseconds(opt.tick_ms), tick_atom_v);
      },
      [=](save_atom) -> int64_t {
        auto& st = self->state;
        if (heldout_file.empty() || !st.restore_error.empty()) return -1;
        const auto& held = st.buffer.heldout_records();
        try {
          files::make_dirs(opt.state_dir);
          save_records(heldout_file, std::vector<DistillRecord>(held.begin(), held.end()));
        } catch (const std::exception& e) {
          log::error(log::cat("buffer: cannot save the held-out slice: ", e.what()));
          return -1;
        }
        return static_cast<int64_t>(held.size());
      },
      [=](stats_atom) -> std::string {
        auto& st = self->state;
        auto& b = st.buffer;
        nlohmann::json out{{"records", b.size()},
                           {"heldout", b.heldout_size()},
                           {"bytes", b.bytes()},
                           {"added", b.added()},
                           {"evicted", b.evicted()},
                           {"budget_bytes", opt.budget_bytes},
                           {"heldout_restored", st.restored}};
        if (!st.restore_error.empty()) out["heldout_restore_error"] = st.restore_error;
        if (!st.restore_warning.empty()) out["heldout_restore_warning"] = st.restore_warning;
        return out.dump();
      },
  };
}

}  // namespace

caf::actor spawn_buffer(caf::actor_system& sys, BufferOptions opt) {
  // Detached: waiting for a round's top-k on the GPU blocks this thread, not a scheduler worker.
  return sys.spawn<caf::detached>(buffer, opt);
}

}  // namespace osd
