#pragma once
// Distillation losses over the vocabulary (pure functions, differentiable in the student).
//
//   forward KL   KL(p || q) = sum p (log p - log q)              (the paper's best in most runs)
//   reverse KL   KL(q || p) = sum q (log q - log p)
//   JSD(beta)    beta KL(p || m) + (1 - beta) KL(q || m),  m = beta p + (1 - beta) q  (the true mixture form)
//   TVD          1/2 sum |p - q|   (= 1 - acceptance: DistillSpec)
// p: the teacher's (target's) distribution, q: the student's (draft's).
#include <ATen/core/Tensor.h>

#include <optional>
#include <vector>
#include <string>

namespace osd {

enum class DistillLoss { forward_kl, reverse_kl, jsd, tvd };
std::optional<DistillLoss> parse_distill_loss(const std::string& name);  // fkl, rkl, jsd, tvd
const char* distill_loss_name(DistillLoss l);

// student_logits: [N, V] (any float dtype); teacher_probs: [N, V] float32 rows summing to 1.
// Returns the mean loss over rows (a scalar, float32).
at::Tensor distill_loss(DistillLoss kind, const at::Tensor& student_logits, const at::Tensor& teacher_probs,
                        double jsd_beta = 0.5);

// Expected acceptance of speculative sampling, mean over rows of sum_x min(p, q). [N, V] each.
double expected_acceptance(const at::Tensor& student_probs, const at::Tensor& teacher_probs);
// Per row: greedy rows (greedy[i]) accept iff argmax q == argmax p; the others sum_x min(p, q).
// The mean over rows: the acceptance the served traffic sees. [N, V] each.
double traffic_acceptance(const at::Tensor& student_probs, const at::Tensor& teacher_probs,
                          const std::vector<bool>& greedy);
// The same per row: [N] float32 on the inputs' device.
at::Tensor traffic_acceptance_rows(const at::Tensor& student_probs, const at::Tensor& teacher_probs,
                                   const std::vector<bool>& greedy);

}  // namespace osd
