#include "models/distillation/losses.hpp"

#include <torch/torch.h>

#include "models/common/error.hpp"
#include "models/core/tensor_util.hpp"

namespace osd {

std::optional<DistillLoss> parse_distill_loss(const std::string& n) {
  if (n == "fkl" || n == "forward_kl") return DistillLoss::forward_kl;
  if (n == "rkl" || n == "reverse_kl") return DistillLoss::reverse_kl;
  if (n == "jsd") return DistillLoss::jsd;
  if (n == "tvd") return DistillLoss::tvd;
  return std::nullopt;
}

const char* distill_loss_name(DistillLoss l) {
  switch (l) {
    case DistillLoss::forward_kl: return "fkl";
    case DistillLoss::reverse_kl: return "rkl";
    case DistillLoss::jsd: return "jsd";
    case DistillLoss::tvd: return "tvd";
  }
  return "?";
}

at::Tensor distill_loss(DistillLoss kind, const at::Tensor& student_logits, const at::Tensor& teacher_probs,
                        double beta) {
  check_dims(student_logits, 2, "distill_loss student_logits [N, V]");
  check_dims(teacher_probs, 2, "distill_loss teacher_probs [N, V]");
  if (student_logits.sizes() != teacher_probs.sizes())
    throw Error("distill_loss: student " + shape_str(student_logits) + " and teacher " + shape_str(teacher_probs) +
                " differ");
  const double eps = 1e-12;
  auto log_q = torch::log_softmax(student_logits.to(torch::kFloat32), -1);   // [N, V]
  auto q = log_q.exp();
  auto p = teacher_probs.to(torch::kFloat32);
  auto log_p = torch::log(p.clamp_min(eps));
  at::Tensor per_row;                                                        // [N]
  switch (kind) {
    case DistillLoss::forward_kl:
      per_row = (p * (log_p - log_q)).sum(-1);
      break;
    case DistillLoss::reverse_kl:
      per_row = (q * (log_q - log_p)).sum(-1);
      break;
    case DistillLoss::jsd: {
      if (!(beta > 0 && beta < 1)) throw Error("distill_loss: jsd beta must be in (0, 1)");
      auto m = beta * p + (1 - beta) * q;
      auto log_m = torch::log(m.clamp_min(eps));
      per_row = beta * (p * (log_p - log_m)).sum(-1) + (1 - beta) * (q * (log_q - log_m)).sum(-1);
      break;
    }
    case DistillLoss::tvd:
      per_row = 0.5 * (p - q).abs().sum(-1);
      break;
  }
  return per_row.mean();
}

double expected_acceptance(const at::Tensor& q, const at::Tensor& p) {
  return torch::minimum(q.to(torch::kFloat32), p.to(torch::kFloat32)).sum(-1).mean().item<double>();
}

double traffic_acceptance(const at::Tensor& q, const at::Tensor& p, const std::vector<bool>& greedy) {
  if (q.size(0) == 0) return 0.0;
  return traffic_acceptance_rows(q, p, greedy).mean().item<double>();
}

at::Tensor traffic_acceptance_rows(const at::Tensor& q, const at::Tensor& p,
                                   const std::vector<bool>& greedy) {
  auto overlap = torch::minimum(q.to(torch::kFloat32), p.to(torch::kFloat32)).sum(-1);      // [N]
  auto agree = q.argmax(-1).eq(p.argmax(-1)).to(torch::kFloat32);                           // [N]
  std::vector<uint8_t> g(greedy.begin(), greedy.end());
  g.resize(static_cast<size_t>(q.size(0)), 0);
  auto mask = to_device(torch::tensor(std::vector<int64_t>(g.begin(), g.end())), q.device())
                  .to(torch::kBool);
  return torch::where(mask, agree, overlap);  // [N]
}

}  // namespace osd
