#include "models/distillation/optim.hpp"

#include <torch/torch.h>

#include <cmath>

namespace osd {

std::unique_ptr<torch::optim::AdamW> make_adamw(const std::vector<at::Tensor>& params, double lr,
                                                double weight_decay) {
  return std::make_unique<torch::optim::AdamW>(
      params, torch::optim::AdamWOptions(lr).weight_decay(weight_decay));
}

void set_learning_rate(torch::optim::Optimizer& optimizer, double lr) {
  for (auto& group : optimizer.param_groups())
    static_cast<torch::optim::AdamWOptions&>(group.options()).lr(lr);
}

double scheduled_lr(int64_t step, int64_t warmup, int64_t total, double lr, double min_ratio) {
  if (warmup > 0 && step <= warmup) return lr * double(step) / double(warmup);
  if (total <= warmup || total <= 0) return lr;
  const double progress = std::min(1.0, double(step - warmup) / double(total - warmup));
  const double cosine = 0.5 * (1.0 + std::cos(M_PI * progress));
  return lr * (min_ratio + (1.0 - min_ratio) * cosine);
}

bool backward_clipped(torch::optim::Optimizer& optimizer, const at::Tensor& loss,
                      const std::vector<at::Tensor>& params, double max_norm, double* loss_value,
                      double* grad_norm) {
  optimizer.zero_grad();
  const double lv = loss.item<double>();
  double norm = std::nan("");
  bool finite = std::isfinite(lv);
  if (finite) {
    loss.backward();
    norm = torch::nn::utils::clip_grad_norm_(params, max_norm);
    finite = std::isfinite(norm);
  }
  if (!finite) optimizer.zero_grad();
  if (loss_value) *loss_value = lv;
  if (grad_norm) *grad_norm = norm;
  return finite;
}

}  // namespace osd
