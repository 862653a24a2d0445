#pragma once
// Optimizer pieces shared by osd-train (models/distillation/trainer.cpp) and the online distiller
// (models/distillation/online_distiller.cpp): one AdamW setup, one learning-rate schedule, one guarded
// backward step. Keeping them in one place keeps offline and online training comparable.
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <memory>
#include <vector>

namespace torch::optim {
class AdamW;
class Optimizer;
}  // namespace torch::optim

namespace osd {

// AdamW over params (torch's betas 0.9/0.999, eps 1e-8; decoupled weight decay).
std::unique_ptr<torch::optim::AdamW> make_adamw(const std::vector<at::Tensor>& params, double lr,
                                                double weight_decay);
void set_learning_rate(torch::optim::Optimizer& optimizer, double lr);

// Linear warm-up over `warmup` steps to `lr`, then cosine decay to lr * min_ratio at `total`
// (total <= warmup or total <= 0: constant after warm-up, the online distiller's schedule).
// step is 1-based: the step about to be taken.
double scheduled_lr(int64_t step, int64_t warmup, int64_t total, double lr, double min_ratio);

// zero_grad, backward, clip to max_norm. Returns false (gradients zeroed again, weights and
// moments untouched) when the loss or the gradient norm is not finite; the caller then skips
// optimizer.step(). loss_value/grad_norm receive the values (NaN when not computed).
bool backward_clipped(torch::optim::Optimizer& optimizer, const at::Tensor& loss,
                      const std::vector<at::Tensor>& params, double max_norm, double* loss_value,
                      double* grad_norm);

}  // namespace osd
