#pragma once
// How fast a draft adapts after a shift: from the acceptance of each request of one domain, in
// the order they were served, with a static draft and with the online one, the gain at the end
// and the number of requests until half of it was reached. No torch.
#include <cstdint>
#include <vector>

namespace osd {

struct AdaptationSpeed {
  double final_gain = 0;          // mean of online - static over the domain's last `tail` requests
  int64_t tail = 0;               // how many requests that mean took
  int64_t requests_to_half = -1;  // requests after the shift until the gain, as a trailing mean
                                  // of `smooth` requests, first reached final_gain / 2;
                                  // -1 where there is no positive final gain
};

// static_acc and online_acc: per request of the domain, in serving order (equal lengths).
AdaptationSpeed adaptation_speed(const std::vector<double>& static_acc,
                                 const std::vector<double>& online_acc, int64_t tail = 20,
                                 int64_t smooth = 5);

}  // namespace osd
