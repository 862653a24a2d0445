#pragma once
// Goodness-of-fit helpers for the statistical sampler tests.
#include <cmath>
#include <cstdint>
#include <vector>

namespace osd::test {

// Pearson chi-square of observed counts against expected probabilities; cells whose expected
// count is below 5 are pooled into one cell. Returns {statistic, degrees of freedom}.
inline std::pair<double, int> chi_square(const std::vector<int64_t>& observed,
                                         const std::vector<double>& expected_p) {
  double n = 0;
  for (auto o : observed) n += static_cast<double>(o);
  double stat = 0, pool_o = 0, pool_e = 0;
  int cells = 0;
  for (size_t i = 0; i < observed.size(); ++i) {
    double e = expected_p[i] * n;
    if (e < 5) {
      pool_o += static_cast<double>(observed[i]);
      pool_e += e;
      continue;
    }
    stat += (observed[i] - e) * (observed[i] - e) / e;
    ++cells;
  }
  if (pool_e > 0) {
    // An observed count in a cell of zero expected mass is an outright failure.
    stat += pool_e >= 1e-9 ? (pool_o - pool_e) * (pool_o - pool_e) / std::max(pool_e, 1.0) : pool_o * 1e9;
    ++cells;
  }
  return {stat, std::max(cells - 1, 1)};
}

// Upper critical value of chi-square with `dof` degrees of freedom at significance alpha = 1e-3
// (Wilson-Hilferty; z = 3.0902). A statistic above it rejects "same distribution".
inline double chi_square_critical_1e3(int dof) {
  const double k = dof, z = 3.0902;
  const double a = 2.0 / (9.0 * k);
  return k * std::pow(1 - a + z * std::sqrt(a), 3);
}

}  // namespace osd::test
