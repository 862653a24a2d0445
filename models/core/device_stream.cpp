#include "models/core/device_stream.hpp"

#include <torch/torch.h>

#include <chrono>
#include <cstdlib>
#include <deque>
#include <mutex>
#include <nlohmann/json.hpp>

#include "models/common/error.hpp"

#if defined(OSD_WITH_CUDA) && __has_include(<ATen/cuda/CUDAEvent.h>)
#include <ATen/cuda/CUDAEvent.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#define OSD_HAVE_CUDA_STREAMS 1
#ifdef OSD_WITH_CUDA_KERNELS
#include "models/core/cuda/sm_partition.hpp"
#endif
#endif

namespace osd {

#ifdef OSD_HAVE_CUDA_STREAMS
namespace {
// 32 hardware work queues per GPU instead of CUDA's default 8, unless the process set its own
// value: the verifier, the drafters and the distillers each have a stream, and with 8 queues
// streams share them, so a training kernel queued ahead of a verification kernel on a shared
// queue delays it. Set before any CUDA call (the driver reads it once, at initialisation), so at
// load time; an embedding process that initialised CUDA first keeps its own setting. Measured
// on an H100 (measured): the distiller's cost at concurrency 16, training on
// 16 multiprocessors, was 14.1% with 8 queues and 4.6-13.2% (five pairs, mean 9.2%) with 32.
[[maybe_unused]] const bool queues_set = [] {
  return setenv("CUDA_DEVICE_MAX_CONNECTIONS", "32", 0) == 0;
}();
}  // namespace
#endif

#ifdef OSD_HAVE_CUDA_STREAMS

namespace {
double steady_us() {
  return std::chrono::duration<double, std::micro>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}
}  // namespace

struct StreamMark::Impl {
  at::cuda::CUDAEvent event;  // no timing: only ordering
};

// A stream of its own, not one of libtorch's pool: pool streams are handed out round robin, so two
// owners (an actor and a graph capture on another thread) could share one, and a capture would
// then record the other owner's kernels.
struct ActorStream::Impl {
  Impl(c10::DeviceIndex index, ActorStream::Priority priority, int multiprocessors,
       ActorStream::Side side)
      : device(index), stream(create(index, priority, multiprocessors, side)) {}
  ~Impl() {
    c10::cuda::CUDAGuard guard(device);
    cudaStreamSynchronize(stream.stream());
#ifdef OSD_WITH_CUDA_KERNELS
    if (share > 0) {
      cuda_kernels::destroy_partition_stream(stream.stream());
      return;
    }
#endif
    cudaStreamDestroy(stream.stream());
  }
  c10::cuda::CUDAStream create(c10::DeviceIndex index, ActorStream::Priority priority,
                               int multiprocessors, ActorStream::Side side) {
    c10::cuda::CUDAGuard guard(index);
    int least = 0, greatest = 0;  // numerically: greatest < least (lower is more urgent)
    C10_CUDA_CHECK(cudaDeviceGetStreamPriorityRange(&least, &greatest));
    const int value = priority == ActorStream::Priority::serving      ? greatest
                      : priority == ActorStream::Priority::background ? least
                                                                      : 0;
    if (multiprocessors > 0) {
#ifdef OSD_WITH_CUDA_KERNELS
      auto part = cuda_kernels::create_partition_stream(index, multiprocessors, value,
                                                        side == ActorStream::Side::rest);
      if (part.stream) {
        share = part.multiprocessors;
        return c10::cuda::getStreamFromExternal(static_cast<cudaStream_t>(part.stream), index);
      }
      partition_error = part.error;
#else
      (void)side;
      partition_error = "this build has no CUDA kernels library (green contexts)";
#endif
    }
    cudaStream_t raw = nullptr;
    C10_CUDA_CHECK(cudaStreamCreateWithPriority(&raw, cudaStreamNonBlocking, value));
    return c10::cuda::getStreamFromExternal(raw, index);
  }
  c10::DeviceIndex device;
  int share = 0;  // multiprocessors of a partition (its share or rest); 0: the whole device
  std::string partition_error;
  c10::cuda::CUDAStream stream;  // last: made by create(), which sets the two above
};

namespace {
// Per device, one event whose steady-clock time is known: GPU events are placed on the host's
// clock by their elapsed time from it.
struct ClockBase {
  at::cuda::CUDAEvent event{cudaEventDefault};
  double host_us = 0;
};
const ClockBase& clock_base(c10::DeviceIndex device) {
  static std::once_flag once[64];
  static ClockBase* bases[64];  // never freed: no CUDA calls while the process exits
  if (device < 0 || device >= 64) throw Error("GPU timeline: device index out of range");
  std::call_once(once[device], [device] {
    c10::cuda::CUDAGuard guard(device);
    auto* b = new ClockBase;
    b->event.record(c10::cuda::getCurrentCUDAStream(device));
    b->event.synchronize();
    b->host_us = steady_us();
    bases[device] = b;
  });
  return *bases[device];
}
}  // namespace

struct GpuTimeline::Impl {
  struct Span {
    std::unique_ptr<at::cuda::CUDAEvent> start, stop;
    std::string name, args;
  };
  c10::DeviceIndex device = 0;
  std::string track;
  size_t max_spans = 0;
  std::deque<Span> spans;
};

#else

struct StreamMark::Impl {};
struct ActorStream::Impl {};
struct GpuTimeline::Impl {
  std::string track;
};

#endif

StreamMark::StreamMark(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
StreamMark::~StreamMark() = default;

ActorStream::ActorStream(c10::Device device, Priority priority, int multiprocessors, Side side) {
  if (multiprocessors < 0)
    throw Error("an actor stream's multiprocessor share must be >= 0 (0: the whole device), not " +
                std::to_string(multiprocessors));
#ifdef OSD_HAVE_CUDA_STREAMS
  if (device.is_cuda()) {
    const auto index = device.has_index() ? device.index() : c10::cuda::current_device();
    impl_ = std::make_unique<Impl>(index, priority, multiprocessors, side);
  }
#else
  (void)device, (void)priority, (void)side;
#endif
}

int ActorStream::multiprocessors() const {
#ifdef OSD_HAVE_CUDA_STREAMS
  if (impl_) return impl_->share;
#endif
  return 0;
}

std::string ActorStream::partition_error() const {
#ifdef OSD_HAVE_CUDA_STREAMS
  if (impl_) return impl_->partition_error;
#endif
  return "";
}

ActorStream::~ActorStream() = default;

bool ActorStream::on_gpu() const {
  return impl_ != nullptr;
}

void ActorStream::make_current() const {
#ifdef OSD_HAVE_CUDA_STREAMS
  if (impl_) c10::cuda::setCurrentCUDAStream(impl_->stream);
#endif
}

void ActorStream::run_on(const std::function<void()>& f) const {
#ifdef OSD_HAVE_CUDA_STREAMS
  if (impl_) {
    c10::cuda::CUDAStreamGuard guard(impl_->stream);
    f();
    return;
  }
#endif
  f();
}

std::shared_ptr<const StreamMark> ActorStream::mark() const {
#ifdef OSD_HAVE_CUDA_STREAMS
  if (impl_) {
    auto m = std::make_unique<StreamMark::Impl>();
    m->event.record(impl_->stream);
    return std::make_shared<const StreamMark>(std::move(m));
  }
#endif
  return nullptr;
}

void ActorStream::wait(const StreamMark* mark, const std::vector<at::Tensor>& used) const {
#ifdef OSD_HAVE_CUDA_STREAMS
  if (!impl_ || !mark) return;
  const_cast<at::cuda::CUDAEvent&>(mark->impl().event).block(impl_->stream);
  for (const auto& t : used)
    if (t.defined() && t.is_cuda() && t.storage().data_ptr().get() != nullptr)
      c10::cuda::CUDACachingAllocator::recordStream(t.storage().data_ptr(), impl_->stream);
#endif
}

void ActorStream::synchronize() const {
#ifdef OSD_HAVE_CUDA_STREAMS
  if (impl_) impl_->stream.synchronize();
#endif
}

GpuTimeline::GpuTimeline(c10::Device device, std::string track, size_t max_spans) {
#ifdef OSD_HAVE_CUDA_STREAMS
  if (device.is_cuda()) {
    impl_ = std::make_unique<Impl>();
    impl_->device = device.has_index() ? device.index() : c10::cuda::current_device();
    impl_->track = std::move(track);
    impl_->max_spans = max_spans;
    clock_base(impl_->device);  // before any span
  }
#endif
}

GpuTimeline::~GpuTimeline() = default;

size_t GpuTimeline::begin() {
#ifdef OSD_HAVE_CUDA_STREAMS
  if (!impl_ || impl_->spans.size() >= impl_->max_spans) return none;
  Impl::Span s;
  s.start = std::make_unique<at::cuda::CUDAEvent>(cudaEventDefault);
  s.start->record(c10::cuda::getCurrentCUDAStream(impl_->device));
  impl_->spans.push_back(std::move(s));
  return impl_->spans.size() - 1;
#else
  return none;
#endif
}

void GpuTimeline::end(size_t span, std::string name, std::string args_json) {
#ifdef OSD_HAVE_CUDA_STREAMS
  if (!impl_ || span >= impl_->spans.size()) return;
  auto& s = impl_->spans[span];
  s.stop = std::make_unique<at::cuda::CUDAEvent>(cudaEventDefault);
  s.stop->record(c10::cuda::getCurrentCUDAStream(impl_->device));
  s.name = std::move(name);
  s.args = std::move(args_json);
#endif
}

size_t GpuTimeline::size() const {
#ifdef OSD_HAVE_CUDA_STREAMS
  if (impl_) return impl_->spans.size();
#endif
  return 0;
}

std::string GpuTimeline::chrome_events() const {
  auto out = nlohmann::json::array();
#ifdef OSD_HAVE_CUDA_STREAMS
  if (impl_) {
    const auto& base = clock_base(impl_->device);
    for (const auto& s : impl_->spans) {
      if (!s.stop) continue;  // not ended (yet)
      s.stop->synchronize();
      nlohmann::json e = {{"name", s.name},
                          {"ph", "X"},
                          {"pid", 1},
                          {"tid", impl_->track + " (GPU)"},
                          {"ts", base.host_us + 1e3 * base.event.elapsed_time(*s.start)},
                          {"dur", 1e3 * s.start->elapsed_time(*s.stop)}};
      if (!s.args.empty()) e["args"] = nlohmann::json::parse(s.args);
      out.push_back(std::move(e));
    }
  }
#endif
  return out.dump();
}

}  // namespace osd
