#pragma once
// The distillation records a verification round hands the buffer, from the logits the round
// computed anyway (no extra target pass): where each record's context ends and which row of the
// round's logits holds the target's distribution there. The buffer takes the top-k and builds the
// DistillRecords (make_records), off the round's path.
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <vector>

#include "models/distillation/distill_buffer.hpp"

namespace osd {

// One row of a verified round, as the records need it.
struct RecordedRow {
  int64_t source = 0;             // the request (sequence id)
  std::vector<int64_t> so_far;    // the sequence's tokens before the round
  std::vector<int64_t> drafts;    // the round's draft tokens (k of them)
  int64_t accepted = 0;           // leading drafts accepted
  bool greedy = false;
  bool plain = false;             // k = 0: record the target's distribution of the next token
};

// The records of a round: for each row that drafted, its first rejected position (or, with
// all_positions, every verified position up to it); for each `plain` row the position of its next
// token. logits: the round's logits as [B * K1, V] (row i, position j at i * K1 + j). Empty (no
// rows) when nothing is recorded.
RecordSource round_records(int64_t route, const std::vector<RecordedRow>& rows, at::Tensor logits,
                           int64_t K1, bool all_positions, int64_t top_k);

// The records of a prompt's last m positions from its prefill's logits [m, V]: row j is the
// target's distribution after prompt[0 .. P - m + j).
RecordSource prompt_records(int64_t route, int64_t source, const std::vector<int64_t>& prompt,
                            at::Tensor logits, int64_t top_k, bool greedy);

}  // namespace osd
