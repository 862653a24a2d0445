#pragma once
// buffer: owns the online distillation records (models/distill_buffer.hpp): what the verifier
// verified, compactly, within a memory budget, with a held-out slice.
//   (records_atom, vector<DistillRecord>)        from the verifier
//   (sample_atom, n, min_new) -> DistillBatch    the newest n records and the held-out slice,
//                                                answered once min_new records are new
//   (stats_atom) -> std::string                  JSON counters
#include <caf/fwd.hpp>

#include <cstddef>
#include <cstdint>

namespace osd {

struct BufferOptions {
  size_t budget_bytes = 64u << 20;
  int64_t heldout_every = 10;
  size_t heldout_max = 512;
};

caf::actor spawn_buffer(caf::actor_system& sys, BufferOptions opt);

}  // namespace osd
