#pragma once
// When the guard may publish: a sequential test on the paired held-out gains, so a draft that
// clearly gains is published as soon as the evidence allows, not after a fixed slice size, with a
// stated false-publish rate.
//
// Between two publishes the distiller's updates are looks j = 1, 2, ... at a candidate. Look j
// publishes when the paired gain g (candidate - published, held-out requests as the units; see
// paired_gain) is at least its threshold
//   g >= t_{units - 1}(1 - alpha_j) * stderr(g),   alpha_j = alpha / (j (j + 1)),
// with t the Student-t quantile (few units: wide), and g >= min_gain. The alpha_j sum to alpha,
// so whatever happens between two publishes, the chance that any look publishes a candidate whose
// true gain is zero or less is at most alpha (a union bound over looks: valid although each look
// judges another candidate on a slice that changes). Fewer than min_units held-out requests: no
// decision yet. No torch.
#include <cstdint>

namespace osd {

struct SequentialGuardOptions {
  double alpha = 0.05;      // false-publish rate between two publishes
  int64_t min_units = 3;    // held-out requests before the first decision (a standard error needs 2)
  double min_gain = 0.01;   // and the gain must be at least this (acceptance, absolute)
};

// The threshold of look `look` (1-based) in standard errors, with `units` held-out requests.
double sequential_guard_z(int64_t look, int64_t units, double alpha);
// Whether look `look` publishes a candidate with this paired gain.
bool sequential_guard_publishes(double gain, double stderr_, int64_t units, int64_t look,
                                const SequentialGuardOptions& o);

// Quantiles: the standard normal's (Acklam's rational approximation, |error| < 1.2e-9) and
// Student's t with `dof` degrees of freedom (bisection on its CDF, the regularized incomplete beta
// function by its continued fraction).
double normal_quantile(double p);
double student_t_quantile(double p, double dof);

}  // namespace osd
