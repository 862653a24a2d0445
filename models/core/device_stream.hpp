#pragma once
// Each GPU actor's own CUDA stream, the marks that order work across streams without a host sync,
// and CUDA-event spans for per-actor GPU traces (plain libtorch; the actors use them).
//
//   drafter:  stream D   propose ... mark()  --Proposals{ready}-->  verifier: stream V waits(mark)
//   verifier: stream V   score, reject, one host read (the accepted tokens)
//   distiller: stream T  training steps; synchronised before a snapshot is sent
//
// On the CPU and in CPU builds of libtorch every call is a no-op (marks are null, spans are not
// recorded), so callers need no #ifdefs.
#include <c10/core/Device.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace at {
class Tensor;
}

namespace osd {

// A point in one stream's queue: the work submitted to it before the mark.
class StreamMark {
 public:
  struct Impl;
  explicit StreamMark(std::unique_ptr<Impl> impl);
  ~StreamMark();
  const Impl& impl() const { return *impl_; }

 private:
  std::unique_ptr<Impl> impl_;
};

class ActorStream {
 public:
  // serving: the GPU's highest stream priority (the verifier, the drafters); background: its
  // lowest (the distiller): when both have kernels waiting, the GPU schedules serving's first.
  enum class Priority { normal, serving, background };
  // A stream of its own on a CUDA device (created here, destroyed with it after its work is
  // done); nothing on the CPU. Owners destroy it after the tensors made on it.
  // multiprocessors > 0: its kernels run on that share of the GPU's multiprocessors only (a CUDA
  // green context; the distiller's training leaves the rest to serving), or with Side::rest on
  // the GPU's other multiprocessors, beside that share (serving next to a distiller on it). Where
  // the build or the driver has no green contexts, or the share is not less than the device's
  // count, the stream takes the whole device and partition_error() says why.
  enum class Side { share, rest };
  explicit ActorStream(c10::Device device, Priority priority = Priority::normal,
                       int multiprocessors = 0, Side side = Side::share);
  ~ActorStream();
  ActorStream(const ActorStream&) = delete;
  ActorStream& operator=(const ActorStream&) = delete;

  bool on_gpu() const;
  int multiprocessors() const;          // the SMs it got; 0: the whole device (or the CPU)
  std::string partition_error() const;  // why a requested share was not made ("" if it was)
  // Makes this the calling thread's current stream of its device. Actors with a thread of their
  // own (CAF detached actors) call it before GPU work; libtorch then queues everything there.
  void make_current() const;
  // Runs f with this as the current stream, then restores the caller's (for work done on a thread
  // the actor does not own, e.g. its construction).
  void run_on(const std::function<void()>& f) const;
  // Marks the work queued on this stream so far (null on the CPU).
  std::shared_ptr<const StreamMark> mark() const;
  // This stream waits, on the GPU, for a mark of another stream (the host does not block). The
  // tensors made there and used here are recorded as in use by this stream, so the allocator does
  // not hand their memory out again before this stream is done with them.
  void wait(const StreamMark* mark, const std::vector<at::Tensor>& used = {}) const;
  // Blocks the host until this stream's queued work is done.
  void synchronize() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// GPU time of named steps on the current stream, from CUDA events with timing, resolved after
// the fact: begin() and end() only enqueue events; chrome_events() waits for them and maps them
// to the steady clock (microseconds, as the host-side trace events). At most max_spans are kept.
class GpuTimeline {
 public:
  GpuTimeline(c10::Device device, std::string track, size_t max_spans = 50000);
  ~GpuTimeline();
  GpuTimeline(const GpuTimeline&) = delete;
  GpuTimeline& operator=(const GpuTimeline&) = delete;

  static constexpr size_t none = static_cast<size_t>(-1);
  // Records a start event on the current stream; none when off (CPU) or full.
  size_t begin();
  // Records the span's end event; `args_json` is a JSON object for the trace ("" = none).
  void end(size_t span, std::string name, std::string args_json = "");
  size_t size() const;
  // The spans as Chrome trace events: a JSON array of {"ph":"X","tid":"<track> (GPU)",...}.
  std::string chrome_events() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace osd
