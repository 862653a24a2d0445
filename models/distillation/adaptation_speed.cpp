#include "models/distillation/adaptation_speed.hpp"

#include <algorithm>

#include "models/common/error.hpp"

namespace osd {

AdaptationSpeed adaptation_speed(const std::vector<double>& static_acc,
                                 const std::vector<double>& online_acc, int64_t tail,
                                 int64_t smooth) {
  if (static_acc.size() != online_acc.size())
    throw Error("adaptation_speed: " + std::to_string(static_acc.size()) + " static and " +
                std::to_string(online_acc.size()) + " online acceptances");
  AdaptationSpeed out;
  const int64_t n = static_cast<int64_t>(static_acc.size());
  if (n == 0 || tail < 1 || smooth < 1) return out;
  std::vector<double> gain(n);
  for (int64_t i = 0; i < n; ++i) gain[i] = online_acc[i] - static_acc[i];
  out.tail = std::min(tail, n);
  for (int64_t i = n - out.tail; i < n; ++i) out.final_gain += gain[i];
  out.final_gain /= static_cast<double>(out.tail);
  if (out.final_gain <= 0) return out;
  double window = 0;
  for (int64_t i = 0; i < n; ++i) {
    window += gain[i];
    if (i >= smooth) window -= gain[i - smooth];
    const double mean = window / static_cast<double>(std::min(i + 1, smooth));
    if (mean >= out.final_gain / 2) {
      out.requests_to_half = i + 1;
      break;
    }
  }
  return out;
}

}  // namespace osd
