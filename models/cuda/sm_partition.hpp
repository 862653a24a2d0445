#pragma once
// A CUDA stream confined to a share of a GPU's multiprocessors (a green context, CUDA 12.5+
// driver). The distiller trains on one, so its large training kernels leave the other
// multiprocessors to verification and drafting instead of filling the whole GPU between them.
// Green contexts of the primary context share its memory: tensors from libtorch's allocator are
// used there as on any stream. No torch headers (models/cuda/sm_partition.cu, nvcc).
#include <string>

namespace osd::cuda_kernels {

struct PartitionStream {
  void* stream = nullptr;   // a cudaStream_t; null when none could be made (see error)
  int multiprocessors = 0;  // what it got: the driver rounds up to its granularity (8 on Hopper)
  std::string error;
};

// A stream of `priority` (cudaStreamCreateWithPriority's scale) whose kernels run on at most
// `multiprocessors` of `device`'s (1 <= multiprocessors < the device's count). Streams asking
// for the same share of one device share its multiprocessors (one green context, kept for the
// process's lifetime).
PartitionStream create_partition_stream(int device, int multiprocessors, int priority);
void destroy_partition_stream(void* stream);

}  // namespace osd::cuda_kernels
