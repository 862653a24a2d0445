#pragma once
// Preallocated KV cache for many sequences at once (gpt-fast's KVCache, with slots).
//
// Each sequence owns one slot. Keys and values of layer l live in
//   keys(l), values(l): [num_slots, max_len, num_kv_heads, head_dim]
// allocated once; nothing is reallocated per step. A slot's length says how many positions are
// valid; positions past it hold garbage that attention masks out, so truncation is O(1).
// Every method validates its arguments before it changes anything: after an osd::Error the
// cache is exactly as it was.
#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include <cstdint>
#include <vector>

#include "models/core/config.hpp"

namespace osd {

class KVCache {
 public:
  KVCache(const ModelConfig& config, int64_t num_slots, int64_t max_len, c10::Device device,
          c10::ScalarType dtype);

  int64_t allocate_slot();          // throws "KV cache full" when none is free
  void free_slot(int64_t slot);     // throws for an unknown or already free slot
  void truncate(int64_t slot, int64_t new_length);  // new_length in [0, length(slot)]
  int64_t length(int64_t slot) const;
  bool in_use(int64_t slot) const;

  int64_t num_slots() const { return static_cast<int64_t>(length_.size()); }
  int64_t max_len() const { return max_len_; }
  int64_t free_slots() const { return static_cast<int64_t>(free_list_.size()); }
  int64_t num_layers() const { return static_cast<int64_t>(keys_.size()); }
  c10::Device device() const { return device_; }
  c10::ScalarType dtype() const { return dtype_; }
  int64_t bytes() const;

  // For the transformer's forward pass.
  // Throws unless every slot is in use, appears once, and has room for `chunk` more positions.
  void check_append(const std::vector<int64_t>& slots, int64_t chunk) const;
  at::Tensor& keys(int64_t layer) { return keys_[layer]; }
  at::Tensor& values(int64_t layer) { return values_[layer]; }
  // After all layers have written: length(slots[i]) += counts[i].
  void commit(const std::vector<int64_t>& slots, const std::vector<int64_t>& counts);

 private:
  void check_slot(int64_t slot, const char* what) const;

  std::vector<at::Tensor> keys_, values_;  // per layer: [num_slots, max_len, kv_heads, head_dim]
  std::vector<int64_t> length_;            // per slot
  std::vector<char> in_use_;               // per slot
  std::vector<int64_t> free_list_;         // LIFO of free slots
  int64_t max_len_;
  c10::Device device_;
  c10::ScalarType dtype_;
};

}  // namespace osd
