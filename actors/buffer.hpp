#pragma once
// buffer: owns the online distillation records (models/distillation/distill_buffer.hpp): what the verifier
// verified, compactly, within a memory budget, with a held-out slice.
//   (records_atom, RecordSource)                 from the verifier: one round's records, built
//                                                here (make_records): on a GPU the top-k of the
//                                                round's logits runs on the buffer's own stream
//                                                (the distillers' share of the multiprocessors),
//                                                and the buffer's thread (detached) waits for it
//   (records_atom, vector<DistillRecord>)        records another actor built
//   (sample_atom, n, min_new, route, wait_ms) -> DistillBatch
//                                                n records (half new, half replay) and the
//                                                held-out slice, answered once min_new records
//                                                are new, or after wait_ms (> 0) once any is
//   (save_atom) -> int64_t                       writes the held-out slice to state_dir
//                                                (heldout.bin; -1 when not saved), which the
//                                                next start reads back, so the guard can judge
//                                                from the first update after a restart
//   (stats_atom) -> std::string                  JSON counters
#include <c10/core/Device.h>
#include <caf/fwd.hpp>

#include <cstddef>
#include <cstdint>
#include <string>

namespace osd {

struct BufferOptions {
  size_t budget_bytes = 64u << 20;
  int64_t heldout_every = 10;
  size_t heldout_max = 512;
  int64_t tick_ms = 100;  // how often deadlines of waiting sample requests are checked
  bool replay_requests = true;  // replay whole requests (DistillBuffer::Options)
  c10::Device device = c10::Device(c10::kCPU);  // where the verifier's logits arrive
  int multiprocessors = 0;  // CUDA: the share its stream runs on (the distillers'; 0: all)
  // The route's state folder ("" = none): the held-out slice is read from state_dir/heldout.bin
  // at start (or heldout.bin.previous, with a warning, when that is torn or corrupt) and written
  // there on save. A file that cannot be read is logged and left as it is.
  std::string state_dir;
  int64_t fail_on_records = -1;  // tests: throw (and die) on this records message (1-based)
};

caf::actor spawn_buffer(caf::actor_system& sys, BufferOptions opt);

}  // namespace osd
