// Streams on a share of the multiprocessors: see sm_partition.hpp. Driver API (libcuda).
#include "models/core/cuda/sm_partition.hpp"

#include <cuda.h>

#include <map>
#include <mutex>
#include <utility>

namespace osd::cuda_kernels {
namespace {

#if CUDA_VERSION >= 12050
std::string describe(CUresult r, const char* call) {
  const char* text = nullptr;
  cuGetErrorString(r, &text);
  return std::string(call) + ": " + (text ? text : "unknown CUDA driver error");
}

struct GreenContext {
  CUgreenCtx context = nullptr;
  int multiprocessors = 0;
};

// A share of a device and the rest of it, as two green contexts.
struct Split {
  GreenContext share, rest;
};

GreenContext make_green_context(CUdevice dev, CUdevResource* resource, std::string& error) {
  CUdevResourceDesc desc = nullptr;
  CUresult r = cuDevResourceGenerateDesc(&desc, resource, 1);
  if (r != CUDA_SUCCESS) {
    error = describe(r, "cuDevResourceGenerateDesc");
    return {};
  }
  GreenContext g;
  r = cuGreenCtxCreate(&g.context, desc, dev, CU_GREEN_CTX_DEFAULT_STREAM);
  if (r != CUDA_SUCCESS) {
    error = describe(r, "cuGreenCtxCreate");
    return {};
  }
  g.multiprocessors = static_cast<int>(resource->sm.smCount);
  return g;
}

// One split per (device, requested share), made on first use and never destroyed (the streams
// made from it may outlive any owner here; the driver frees it at exit). The rest's context is
// made with the share's, so both sides of one split never overlap.
std::pair<Split, std::string> green_contexts(int device, int multiprocessors) {
  static std::mutex mutex;
  static std::map<std::pair<int, int>, Split> made;
  std::lock_guard<std::mutex> lock(mutex);
  const auto key = std::make_pair(device, multiprocessors);
  if (auto it = made.find(key); it != made.end()) return {it->second, ""};

  int driver = 0;
  if (cuDriverGetVersion(&driver) != CUDA_SUCCESS || driver < 12050)
    return {{}, "green contexts need a CUDA 12.5+ driver"};
  CUdevice dev = 0;
  CUresult r = cuDeviceGet(&dev, device);
  if (r != CUDA_SUCCESS) return {{}, describe(r, "cuDeviceGet")};
  CUdevResource all{};
  r = cuDeviceGetDevResource(dev, &all, CU_DEV_RESOURCE_TYPE_SM);
  if (r != CUDA_SUCCESS) return {{}, describe(r, "cuDeviceGetDevResource")};
  if (multiprocessors < 1 || static_cast<unsigned>(multiprocessors) >= all.sm.smCount)
    return {{},
            "a share of " + std::to_string(multiprocessors) + " multiprocessors of the device's " +
                std::to_string(all.sm.smCount) + " is not a part of it"};
  CUdevResource share{}, rest{};
  unsigned groups = 1;
  r = cuDevSmResourceSplitByCount(&share, &groups, &all, &rest, 0,
                                  static_cast<unsigned>(multiprocessors));
  if (r != CUDA_SUCCESS || groups != 1) return {{}, describe(r, "cuDevSmResourceSplitByCount")};
  if (rest.sm.smCount == 0)
    return {{}, "a share of " + std::to_string(multiprocessors) + " multiprocessors leaves none"};
  std::string error;
  Split split;
  split.share = make_green_context(dev, &share, error);
  if (!split.share.context) return {{}, error};
  split.rest = make_green_context(dev, &rest, error);
  if (!split.rest.context) return {{}, error};
  made[key] = split;
  return {split, ""};
}
#endif

}  // namespace

PartitionStream create_partition_stream(int device, int multiprocessors, int priority, bool rest) {
  PartitionStream out;
#if CUDA_VERSION >= 12050
  auto [split, error] = green_contexts(device, multiprocessors);
  const GreenContext green = rest ? split.rest : split.share;
  if (!green.context) {
    out.error = error;
    return out;
  }
  CUstream stream = nullptr;
  const CUresult r =
      cuGreenCtxStreamCreate(&stream, green.context, CU_STREAM_NON_BLOCKING, priority);
  if (r != CUDA_SUCCESS) {
    out.error = describe(r, "cuGreenCtxStreamCreate");
    return out;
  }
  out.stream = stream;
  out.multiprocessors = green.multiprocessors;
#else
  (void)device, (void)multiprocessors, (void)priority, (void)rest;
  out.error = "built against a CUDA toolkit older than 12.5: no green contexts";
#endif
  return out;
}

void destroy_partition_stream(void* stream) {
  if (stream) cuStreamDestroy(static_cast<CUstream>(stream));
}

}  // namespace osd::cuda_kernels
