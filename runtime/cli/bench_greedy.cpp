#include "runtime/cli/bench_greedy.hpp"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>

#include "models/core/transformer.hpp"

namespace osd::bench {

void GreedyCheck::compare(int64_t request, const std::vector<int64_t>& prompt,
                          const std::vector<int64_t>& speculative,
                          const std::vector<int64_t>& target_only) {
  ++checked_;
  if (speculative == target_only) return;
  ++mismatched_;
  if (first_.any) return;
  size_t at = 0;
  while (at < speculative.size() && at < target_only.size() && speculative[at] == target_only[at])
    ++at;
  first_.any = true;
  first_.request = request;
  first_.position = static_cast<int64_t>(at);
  first_.speculative = at < speculative.size() ? speculative[at] : -1;  // -1: it had ended
  first_.target_only = at < target_only.size() ? target_only[at] : -1;
  first_.context = prompt;
  first_.context.insert(first_.context.end(), target_only.begin(), target_only.begin() + at);
}

void GreedyCheck::merge(const GreedyCheck& other) {
  checked_ += other.checked_;
  mismatched_ += other.mismatched_;
  if (!first_.any && other.first_.any) first_ = other.first_;
}

void GreedyCheck::explain(Transformer& target) {
  if (!first_.any || first_.explained || first_.context.empty()) return;
  torch::NoGradGuard no_grad;
  auto ids = torch::tensor(first_.context, torch::kInt64).view({1, -1}).to(target.device());
  auto logits = target.forward_full(ids)[0][-1].to(torch::kFloat64).cpu();  // [V]
  auto top = std::get<0>(logits.topk(2));
  first_.top1 = top[0].item<double>();
  first_.top2_gap = first_.top1 - top[1].item<double>();
  const auto dt = target.dtype();
  // A few units of rounding of the logits' size in the model's dtype.
  const double unit = dt == torch::kBFloat16 ? std::ldexp(1.0, -8)
                      : dt == torch::kHalf   ? std::ldexp(1.0, -11)
                                             : std::ldexp(1.0, -24);
  first_.rounding = 8 * unit * std::max(1.0, std::abs(first_.top1));
  first_.dtype = dt == torch::kBFloat16 ? "bfloat16" : dt == torch::kHalf ? "float16" : "float32";
  first_.explained = true;
}

nlohmann::json GreedyCheck::to_json() const {
  nlohmann::json j = {{"checked", checked_},
                      {"mismatched", mismatched_},
                      {"mismatch_rate", checked_ ? double(mismatched_) / double(checked_) : 0.0},
                      {"first_mismatch", nullptr},
                      {"cause", nullptr},
                      {"how", how_}};
  if (!first_.any) return j;
  nlohmann::json m = {{"request", first_.request},
                      {"position", first_.position},
                      {"speculative", first_.speculative},
                      {"target_only", first_.target_only}};
  if (first_.explained) {
    m["target_top2_gap"] = first_.top2_gap;
    m["target_top1_logit"] = first_.top1;
    m["rounding"] = first_.rounding;
    m["dtype"] = first_.dtype;
    const bool tie = first_.top2_gap <= first_.rounding;
    m["within_rounding"] = tie;
    j["cause"] = tie ? "near-tie: the target's two best logits differ by " +
                           std::to_string(first_.top2_gap) + ", within " + first_.dtype +
                           " rounding of logits of this size (a batched verification pass and "
                           "a one-token step round differently)"
                     : "not explained by rounding: the target's two best logits differ by " +
                           std::to_string(first_.top2_gap) + " (" + first_.dtype + ")";
  } else {
    j["cause"] = "not examined";
  }
  j["first_mismatch"] = m;
  return j;
}

}  // namespace osd::bench
