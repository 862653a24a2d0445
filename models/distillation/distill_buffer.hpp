#pragma once
// The online distillation buffer (the data; actors/buffer.cpp is its actor).
//
// A record holds a context and the target's distribution over the next token, as computed by
// the verifier (no extra target pass). Distributions are stored compactly: the top-k token ids
// and probabilities plus the tail mass, which is spread uniformly over the other tokens when the
// distribution is rebuilt (top_k = 0 stores the full distribution).
//
// Memory: bounded by budget_bytes. Eviction policy: oldest training records first (FIFO); the
// held-out slice is a ring of heldout_max records. Prompt records of held-out requests are
// dropped: the guard measures the positions the draft proposes for, not the prompt's. Held out are
// whole requests (every heldout_every-th request, by the record's `source`), so the guard measures
// how the draft does on requests it never trained on, not on neighbours of its training positions.
// Batches mix the newest records (not yet trained on) with a replay of the whole buffer, so a
// batch is not a handful of consecutive requests the draft would overfit. The replay draws whole
// requests (a record picked uniformly brings every record of its request): a request's records
// are prefixes of one text, so the student's one forward over its longest context serves them
// all (OnlineDistiller::student_logits). Records drawn one by one cost a forward over a whole
// context each: at concurrency 16 on an H100 that made a 256-record step ~250 context rows.
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <deque>
#include <random>
#include <vector>

#include "models/distillation/record_file.hpp"

namespace osd {

// probs: [N, V] float32 rows -> records (contexts filled by the caller). top_k = 0: full rows.
std::vector<DistillRecord> compact_distributions(const at::Tensor& probs, int64_t top_k);
// The same in two halves: stage_top_k takes the top-k of probs [N, V] on their device and copies
// it to the host (waiting for it); compact_rows turns the chosen rows into records.
struct StagedTopK {
  at::Tensor probs;  // [N, K] float32, host
  at::Tensor ids;    // [N, K] int64, host
};
StagedTopK stage_top_k(const at::Tensor& probs, int64_t top_k);
// The top-k of softmax(logits) [N, V] (computed in float32 on logits' device, on the current
// stream), copied to the host and waited for.
StagedTopK stage_logits(const at::Tensor& logits, int64_t top_k);
std::vector<DistillRecord> compact_rows(const StagedTopK& staged, const std::vector<int64_t>& rows);
// What one verification round's records are made from, so that the buffer actor builds them and
// the verifier's round does not (its host time sits between rounds): the target's logits at the
// round's positions (a copy the verifier queued before its sync, so complete when sent; the
// buffer takes their top-k on its own stream) or an already staged top-k, and per record its row
// there, its sequence and how many of the round's draft tokens its context appends to the
// sequence's tokens so far.
struct RecordSource {
  int64_t route = 0;
  at::Tensor logits;  // [N, V] on the verifier's device; used when staged is empty
  int64_t top_k = 0;  // the top-k make_records keeps of logits' rows (0: whole rows)
  StagedTopK staged;
  std::vector<int64_t> rows;                 // per record: row of staged
  std::vector<int64_t> seq;                  // per record: index into bases / drafts
  std::vector<int64_t> appended;             // per record: draft tokens appended, 0 .. k
  std::vector<std::vector<int64_t>> bases;   // per sequence: its tokens so far
  std::vector<std::vector<int64_t>> drafts;  // per sequence: this round's draft tokens
  std::vector<int64_t> sources;              // per sequence: the request (sequence id)
  std::vector<char> greedy;                  // per sequence: decoded greedily
  bool prompt = false;  // the records are prompt positions (DistillRecord::prompt)
};
// The records of a RecordSource (staging its logits first where it has no staged top-k); throws
// osd::Error on indices that do not fit it, or on neither logits nor a staged top-k.
std::vector<DistillRecord> make_records(const RecordSource& source);
// The teacher distributions of records: [N, V] float32 on the CPU.
at::Tensor rebuild_distributions(const std::vector<DistillRecord>& records, int64_t vocab);

class DistillBuffer {
 public:
  struct Options {
    size_t budget_bytes = 64u << 20;
    int64_t heldout_every = 10;  // every n-th request goes to the held-out slice (0: none)
    size_t heldout_max = 512;
    bool replay_requests = true;  // false: replay records one by one, uniformly (comparison)
  };
  DistillBuffer() = default;
  explicit DistillBuffer(Options o) : opt_(o) {}

  void add(DistillRecord r);
  // The newest n training records (copies); resets new_records().
  std::vector<DistillRecord> take_recent(size_t n);
  // n records: the newest new_records() (at most n * new_fraction), the rest a replay of the
  // whole training buffer: whole requests in buffer order (replay_requests), or records drawn
  // uniformly. Resets new_records().
  std::vector<DistillRecord> take_batch(size_t n, double new_fraction, uint64_t seed);
  int64_t new_records() const { return new_; }
  std::vector<DistillRecord> heldout(int64_t route) const;
  const std::deque<DistillRecord>& heldout_records() const { return heldout_; }
  // Puts records saved by an earlier run back into the held-out slice (the newest heldout_max),
  // their requests renamed -1, -2, ... so they stay apart from this run's requests (ids >= 0).
  void restore_heldout(std::vector<DistillRecord> records);
  size_t size() const { return train_.size(); }
  size_t heldout_size() const { return heldout_.size(); }
  size_t bytes() const { return bytes_; }
  int64_t evicted() const { return evicted_; }
  int64_t added() const { return added_; }

 private:
  Options opt_;
  // Appends to the held-out ring, dropping its oldest record past heldout_max.
  void push_heldout(DistillRecord r);
  std::deque<DistillRecord> train_, heldout_;
  size_t bytes_ = 0;
  int64_t new_ = 0, evicted_ = 0, added_ = 0;
};

}  // namespace osd
