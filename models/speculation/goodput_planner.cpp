#include "models/speculation/goodput_planner.hpp"

#include <algorithm>
#include <numeric>

namespace osd {

int64_t RoundPlan::drafting() const {
  return std::count_if(k.begin(), k.end(), [](int64_t x) { return x > 0; });
}

RoundPlan plan_round(const std::vector<PlanRow>& rows, const RoundCostModel& costs, double margin) {
  const int64_t B = static_cast<int64_t>(rows.size());
  RoundPlan best;
  best.k.assign(B, 0);
  if (B == 0) return best;
  best.tokens = static_cast<double>(B);
  best.ms = costs.verify_ms(B, 0);
  best.plain_tokens_per_ms = best.goodput();
  const double bar = best.goodput() * (1.0 + margin);
  double best_rate = bar;
  std::vector<int64_t> order(B);
  std::vector<double> gain(B), net(B);
  const double per_token = costs.catch_up_ms_per_token();
  for (int64_t K = 1; K <= costs.k_max(); ++K) {
    for (int64_t i = 0; i < B; ++i) {
      const auto& e = rows[i].expected_tokens;
      const int64_t k = std::min<int64_t>({K, rows[i].cap, static_cast<int64_t>(e.size()) - 1});
      gain[i] = k > 0 ? e[k] - 1.0 : 0.0;
      net[i] = gain[i] - per_token * static_cast<double>(rows[i].lag) * best.plain_tokens_per_ms;
    }
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return net[a] > net[b]; });
    double tokens = static_cast<double>(B), catch_up_ms = 0;
    for (int64_t m = 1; m <= B && gain[order[m - 1]] > 0; ++m) {
      tokens += gain[order[m - 1]];
      catch_up_ms += per_token * static_cast<double>(rows[order[m - 1]].lag);
      const double ms = costs.round_ms(B, K, m) + catch_up_ms;
      if (ms > 0 && tokens / ms > best_rate) {
        best_rate = tokens / ms;
        best.K = K;
        best.tokens = tokens;
        best.ms = ms;
        std::fill(best.k.begin(), best.k.end(), 0);
        for (int64_t j = 0; j < m; ++j) {
          const int64_t i = order[j];
          best.k[i] = std::min<int64_t>({K, rows[i].cap,
                                         static_cast<int64_t>(rows[i].expected_tokens.size()) - 1});
        }
      }
    }
  }
  if (best.K > 0) best.K = *std::max_element(best.k.begin(), best.k.end());
  return best;
}

}  // namespace osd
