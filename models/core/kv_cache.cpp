#include "models/core/kv_cache.hpp"

#include <torch/torch.h>

#include <algorithm>

#include "models/common/error.hpp"

namespace osd {

KVCache::KVCache(const ModelConfig& config, int64_t num_slots, int64_t max_len,
                 c10::Device device, c10::ScalarType dtype)
    : max_len_(max_len), device_(device), dtype_(dtype) {
  if (num_slots <= 0 || num_slots > (1 << 20))
    throw Error("KVCache: num_slots must be in [1, 2^20] (got " + std::to_string(num_slots) + ")");
  if (max_len <= 0 || max_len > (int64_t{1} << 24))
    throw Error("KVCache: max_len must be in [1, 2^24] (got " + std::to_string(max_len) + ")");
  auto opts = torch::TensorOptions().dtype(dtype).device(device);
  for (int64_t l = 0; l < config.num_layers; ++l) {
    keys_.push_back(torch::zeros({num_slots, max_len, config.num_kv_heads, config.head_dim}, opts));
    values_.push_back(
        torch::zeros({num_slots, max_len, config.num_kv_heads, config.head_dim}, opts));
  }
  length_.assign(num_slots, 0);
  in_use_.assign(num_slots, 0);
  for (int64_t s = num_slots - 1; s >= 0; --s) free_list_.push_back(s);
}

int64_t KVCache::bytes() const {
  int64_t b = 0;
  for (const auto& t : keys_) b += 2 * t.numel() * t.element_size();
  return b;
}

int64_t KVCache::allocate_slot() {
  if (free_list_.empty())
    throw Error("KV cache full: all " + std::to_string(num_slots()) + " slots are in use");
  int64_t s = free_list_.back();
  free_list_.pop_back();
  in_use_[s] = 1;
  length_[s] = 0;
  return s;
}

void KVCache::check_slot(int64_t slot, const char* what) const {
  if (slot < 0 || slot >= num_slots())
    throw Error(std::string(what) + ": unknown KV cache slot " + std::to_string(slot) +
                " (cache has " + std::to_string(num_slots()) + ")");
  if (!in_use_[slot])
    throw Error(std::string(what) + ": KV cache slot " + std::to_string(slot) +
                " is not allocated (freed or never allocated)");
}

void KVCache::free_slot(int64_t slot) {
  check_slot(slot, "free_slot");
  in_use_[slot] = 0;
  length_[slot] = 0;
  free_list_.push_back(slot);
}

void KVCache::truncate(int64_t slot, int64_t new_length) {
  check_slot(slot, "truncate");
  if (new_length < 0 || new_length > length_[slot])
    throw Error("truncate: slot " + std::to_string(slot) + " has length " +
                std::to_string(length_[slot]) + ", cannot truncate to " +
                std::to_string(new_length));
  length_[slot] = new_length;
}

int64_t KVCache::length(int64_t slot) const {
  check_slot(slot, "length");
  return length_[slot];
}

bool KVCache::in_use(int64_t slot) const {
  return slot >= 0 && slot < num_slots() && in_use_[slot];
}

void KVCache::check_append(const std::vector<int64_t>& slots, int64_t chunk) const {
  if (slots.empty()) throw Error("forward: empty batch (no slots)");
  std::vector<int64_t> sorted = slots;
  std::sort(sorted.begin(), sorted.end());
  if (std::adjacent_find(sorted.begin(), sorted.end()) != sorted.end())
    throw Error("forward: a KV cache slot appears twice in one batch");
  for (int64_t s : slots) {
    check_slot(s, "forward");
    if (length_[s] + chunk > max_len_)
      throw Error("forward: slot " + std::to_string(s) + " holds " + std::to_string(length_[s]) +
                  " positions; appending " + std::to_string(chunk) +
                  " exceeds the cache's max_len " + std::to_string(max_len_));
  }
}

void KVCache::commit(const std::vector<int64_t>& slots, const std::vector<int64_t>& counts) {
  for (size_t i = 0; i < slots.size(); ++i) length_[slots[i]] += counts[i];
}

}  // namespace osd
