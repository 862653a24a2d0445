#include "models/online_distiller.hpp"

#include <torch/torch.h>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>

#include "models/hf_checkpoint.hpp"

#include "models/error.hpp"

namespace osd {

OnlineDistiller::OnlineDistiller(const Transformer& draft, DistillOptions o, c10::Device device, int64_t start_version)
    : opt_(o), device_(device), version_(start_version) {
  if (!(o.lr > 0) || !std::isfinite(o.lr)) throw Error("distill lr must be a positive number");
  if (o.batch < 1 || o.steps_per_update < 1) throw Error("distill batch and steps_per_update must be >= 1");
  trainable_ = draft.clone(device, torch::kFloat32);
  for (auto& p : trainable_->parameters()) p.set_requires_grad(true);
  published_ = draft.clone(device, torch::kFloat32);
  reset_optimizer();
}

OnlineDistiller::~OnlineDistiller() = default;

void OnlineDistiller::reset_optimizer() {
  optimizer_ = std::make_unique<torch::optim::AdamW>(
      trainable_->parameters(), torch::optim::AdamWOptions(opt_.lr).weight_decay(opt_.weight_decay));
}

at::Tensor OnlineDistiller::student_logits(Transformer& model, const std::vector<DistillRecord>& records) {
  const int64_t N = static_cast<int64_t>(records.size());
  int64_t T = 1;
  for (const auto& r : records) T = std::max<int64_t>(T, r.context.size());
  auto tokens = torch::zeros({N, T}, torch::kInt64);
  auto acc = tokens.accessor<int64_t, 2>();
  std::vector<int64_t> last(N);
  for (int64_t i = 0; i < N; ++i) {
    const auto& c = records[i].context;
    if (c.empty()) throw Error("distillation record with an empty context");
    for (size_t t = 0; t < c.size(); ++t) acc[i][t] = c[t];
    last[i] = static_cast<int64_t>(c.size()) - 1;
  }
  auto logits = model.forward_full(tokens);                                      // [N, T, V] (right padding is causal-safe)
  auto idx = torch::tensor(last).to(logits.device()).view({N, 1, 1}).expand({N, 1, logits.size(2)});
  return logits.gather(1, idx).squeeze(1);                                       // [N, V]
}

double OnlineDistiller::heldout_acceptance(Transformer& model, const std::vector<DistillRecord>& records) {
  torch::NoGradGuard g;
  auto q = torch::softmax(student_logits(model, records), -1);
  auto p = rebuild_distributions(records, model.config().vocab_size).to(q.device());
  return expected_acceptance(q, p);
}

UpdateReport OnlineDistiller::update(const std::vector<DistillRecord>& batch, const std::vector<DistillRecord>& heldout) {
  UpdateReport rep;
  rep.version = version_;
  if (batch.empty()) {
    rep.decision = "no data";
    return rep;
  }
  const int64_t V = trainable_->config().vocab_size;
  double loss_sum = 0;
  for (int64_t s = 0; s < opt_.steps_per_update; ++s) {
    // Minibatch: a window of the batch, rotating through it.
    std::vector<DistillRecord> mb;
    for (int64_t i = 0; i < opt_.batch; ++i) mb.push_back(batch[(s * opt_.batch + i) % batch.size()]);
    auto teacher = rebuild_distributions(mb, V).to(device_);
    auto loss = distill_loss(opt_.loss, student_logits(*trainable_, mb), teacher, opt_.jsd_beta);
    if (opt_.inject_nan) loss = loss * std::numeric_limits<float>::quiet_NaN();
    optimizer_->zero_grad();
    const double lv = loss.item<double>();
    bool finite = std::isfinite(lv);
    if (finite) {
      loss.backward();
      const double norm = torch::nn::utils::clip_grad_norm_(trainable_->parameters(), opt_.clip);
      finite = std::isfinite(norm);
    }
    if (!finite) {  // discard: the weights and the optimizer's moments are untouched
      optimizer_->zero_grad();
      ++rep.discarded_steps;
      continue;
    }
    ++step_;
    const double warm = opt_.warmup_steps > 0 ? std::min(1.0, double(step_) / double(opt_.warmup_steps)) : 1.0;
    for (auto& group : optimizer_->param_groups())
      static_cast<torch::optim::AdamWOptions&>(group.options()).lr(opt_.lr * warm);
    optimizer_->step();
    loss_sum += lv;
    ++rep.steps;
  }
  if (rep.steps == 0) {
    rep.decision = "discarded: non-finite loss or gradient";
    return rep;
  }
  rep.loss = loss_sum / rep.steps;
  // Guard: nothing is published without evidence from the held-out slice.
  if (static_cast<int64_t>(heldout.size()) < opt_.min_heldout) {
    rep.decision = "deferred: held-out slice too small";  // keep training; publish once it is evaluable
    return rep;
  }
  rep.acceptance_candidate = heldout_acceptance(*trainable_, heldout);
  rep.acceptance_current = heldout_acceptance(*published_, heldout);
  if (!std::isfinite(rep.acceptance_candidate) ||
      rep.acceptance_candidate < rep.acceptance_current - opt_.guard_margin) {
    trainable_->copy_weights_from(*published_);  // roll back to the last good weights
    reset_optimizer();
    rep.decision = "rejected by guard";
    return rep;
  }
  published_->copy_weights_from(*trainable_);
  rep.published = true;
  rep.version = ++version_;
  rep.decision = "published";
  return rep;
}

void OnlineDistiller::save(const std::string& dir) const {
  save_hf_checkpoint(dir, *published_);
  torch::save(*optimizer_, dir + "/optimizer.pt");
  std::ofstream(dir + "/state.json") << nlohmann::json{{"version", version_}, {"steps", step_}}.dump() << "\n";
}

int64_t OnlineDistiller::saved_version(const std::string& dir) {
  std::ifstream f(dir + "/state.json");
  if (!f) return -1;
  try {
    nlohmann::json j;
    f >> j;
    return j.at("version").get<int64_t>();
  } catch (const std::exception& e) {
    throw Error(dir + "/state.json: " + e.what());
  }
}

std::unique_ptr<OnlineDistiller> OnlineDistiller::restore(const std::string& dir, DistillOptions options,
                                                          c10::Device device) {
  auto weights = load_hf_checkpoint(dir, device, DType::f32);
  std::ifstream f(dir + "/state.json");
  nlohmann::json j;
  try {
    f >> j;
  } catch (const std::exception& e) {
    throw Error(dir + "/state.json: " + e.what());
  }
  auto d = std::make_unique<OnlineDistiller>(*weights, options, device, j.at("version").get<int64_t>());
  d->step_ = j.value("steps", int64_t{0});
  try {
    torch::load(*d->optimizer_, dir + "/optimizer.pt");
  } catch (const std::exception& e) {
    throw Error(dir + "/optimizer.pt: cannot load optimizer state: " + e.what());
  }
  return d;
}

std::shared_ptr<Transformer> OnlineDistiller::snapshot(c10::Device device, c10::ScalarType dtype) const {
  return published_->clone(device, dtype);
}

}  // namespace osd
