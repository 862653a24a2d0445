#pragma once
// Greedy equality, checked in every benchmark that generates tokens: greedy speculative output
// compared token for token with greedy target-only output on the same prompts in the same run.
// Exact speculative decoding makes them equal; where they differ, the first mismatch is kept and
// explained by the target's two best logits there (one forward pass): a near-tie that rounding
// can flip (bf16 on a GPU: a batched verification pass and a one-token step add in another
// order) is reported as such, and anything else as not explained by rounding.
#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace osd {
class Transformer;
}

namespace osd::bench {

class GreedyCheck {
 public:
  // how: what was compared (e.g. "the timed greedy replays' outputs").
  explicit GreedyCheck(std::string how = "") : how_(std::move(how)) {}

  // One request: the tokens speculation produced and those target-only produced for `prompt`.
  void compare(int64_t request, const std::vector<int64_t>& prompt,
               const std::vector<int64_t>& speculative, const std::vector<int64_t>& target_only);
  // Adds another check's counts (e.g. of another repeat); keeps the first mismatch seen.
  void merge(const GreedyCheck& other);
  // Explains the first mismatch by the target's top-2 logit gap at its position.
  void explain(Transformer& target);

  int64_t checked() const { return checked_; }
  int64_t mismatched() const { return mismatched_; }
  // {"checked", "mismatched", "mismatch_rate", "first_mismatch": {...} | null, "cause", "how"}
  nlohmann::json to_json() const;

 private:
  std::string how_;
  int64_t checked_ = 0, mismatched_ = 0;
  struct Mismatch {
    bool any = false;
    int64_t request = 0, position = 0, speculative = -1, target_only = -1;
    std::vector<int64_t> context;  // prompt + the tokens both produced before the mismatch
    bool explained = false;
    double top2_gap = 0, top1 = 0, rounding = 0;
    std::string dtype;
  } first_;
};

}  // namespace osd::bench
