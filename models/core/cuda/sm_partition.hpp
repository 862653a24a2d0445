#pragma once
// A CUDA stream confined to a share of a GPU's multiprocessors (a green context, CUDA 12.5+
// driver), or to the rest of the GPU beside that share. The distiller trains on a share, so its
// large training kernels leave the other multiprocessors to verification and drafting instead of
// filling the whole GPU between them; verification and drafting may run on the rest, so none of
// their blocks waits for a multiprocessor a training kernel holds.
// Green contexts of the primary context share its memory: tensors from libtorch's allocator are
// used there as on any stream. No torch headers (models/core/cuda/sm_partition.cu, nvcc).
#include <string>

namespace osd::cuda_kernels {

struct PartitionStream {
  void* stream = nullptr;   // a cudaStream_t; null when none could be made (see error)
  int multiprocessors = 0;  // what it got: the driver rounds up to its granularity (8 on Hopper)
  std::string error;
};

// A stream of `priority` (cudaStreamCreateWithPriority's scale) whose kernels run on at most
// `multiprocessors` of `device`'s (1 <= multiprocessors < the device's count), or with `rest` on
// the device's other multiprocessors, never on that share's. Streams asking for the same share
// (or its rest) of one device share those multiprocessors (one green context each, kept for the
// process's lifetime).
PartitionStream create_partition_stream(int device, int multiprocessors, int priority,
                                        bool rest = false);
void destroy_partition_stream(void* stream);

}  // namespace osd::cuda_kernels
