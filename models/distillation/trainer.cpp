#include "models/distillation/trainer.hpp"

#include <torch/torch.h>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "models/core/autocast.hpp"
#include "models/common/error.hpp"
#include "models/common/files.hpp"
#include "models/common/saved_folder.hpp"
#include "models/weights/hf_checkpoint.hpp"
#include "models/distillation/optim.hpp"

namespace osd {
namespace {

std::string trainer_dir(const std::string& dir) {
  return dir + "/trainer";
}

}  // namespace

void TrainOptions::validate() const {
  auto positive = [](double v) { return v > 0 && std::isfinite(v); };
  if (steps < 1) throw Error("steps must be >= 1");
  if (batch < 1 || batch > 4096) throw Error("batch must be in 1..4096");
  if (seq_len < 2 || seq_len > 65536) throw Error("seq_len must be in 2..65536");
  if (!positive(lr) || lr > 1) throw Error("lr must be in (0, 1]");
  if (!(min_lr_ratio >= 0 && min_lr_ratio <= 1)) throw Error("min_lr_ratio must be in [0, 1]");
  if (warmup < 0) throw Error("warmup must be >= 0");
  if (!(weight_decay >= 0 && weight_decay < 10)) throw Error("weight_decay must be in [0, 10)");
  if (!positive(clip)) throw Error("clip must be a positive number");
  if (eval_every < 0 || eval_batches < 1)
    throw Error("eval_every must be >= 0 and eval_batches >= 1");
  if (loss != "ce" && !parse_distill_loss(loss))
    throw Error("unknown loss '" + loss + "' (ce, fkl, rkl, jsd, tvd)");
  if (!(jsd_beta > 0 && jsd_beta < 1)) throw Error("jsd_beta must be in (0, 1)");
}

Trainer::Trainer(std::shared_ptr<Transformer> model, TrainOptions options, const TextCorpus& corpus,
                 std::shared_ptr<Transformer> teacher)
    : model_(std::move(model)),
      teacher_(std::move(teacher)),
      opt_(std::move(options)),
      corpus_(corpus),
      rng_(opt_.seed) {
  opt_.validate();
  if (!model_) throw Error("no model to train");
  if (model_->dtype() != torch::kFloat32)
    throw Error("the trained model must hold float32 weights");
  const bool distil = opt_.loss != "ce";
  if (distil && !teacher_) throw Error("loss '" + opt_.loss + "' distils from a teacher: give one");
  if (teacher_ && teacher_->config().vocab_size != model_->config().vocab_size)
    throw Error("teacher vocabulary " + std::to_string(teacher_->config().vocab_size) +
                " != student vocabulary " + std::to_string(model_->config().vocab_size));
  if (opt_.seq_len > model_->config().max_position_embeddings)
    throw Error("seq_len " + std::to_string(opt_.seq_len) +
                " exceeds the model's max_position_embeddings " +
                std::to_string(model_->config().max_position_embeddings));
  for (auto& p : model_->parameters()) p.set_requires_grad(true);
  optimizer_ = make_adamw(model_->parameters(), opt_.lr, opt_.weight_decay);
}

Trainer::~Trainer() = default;

at::Tensor Trainer::loss_on(const TokenBatch& batch) {
  const auto dev = model_->device();
  auto inputs = batch.inputs.to(dev);
  auto logits = model_->forward_full(inputs);  // [B, T, V]
  const int64_t V = logits.size(-1);
  if (opt_.loss == "ce")
    return torch::nn::functional::cross_entropy(logits.reshape({-1, V}).to(torch::kFloat32),
                                                batch.targets.to(dev).reshape({-1}));
  at::Tensor teacher_probs;
  {
    torch::NoGradGuard g;
    teacher_probs = torch::softmax(teacher_->forward_full(inputs).to(torch::kFloat32), -1)
                        .reshape({-1, V});  // [B*T, V]
  }
  return distill_loss(*parse_distill_loss(opt_.loss), logits.reshape({-1, V}), teacher_probs,
                      opt_.jsd_beta);
}

StepReport Trainer::train_step() {
  StepReport r;
  r.step = step_ + 1;
  r.lr = scheduled_lr(r.step, opt_.warmup, opt_.steps, opt_.lr, opt_.min_lr_ratio);
  set_learning_rate(*optimizer_, r.lr);
  auto batch = corpus_.sample_batch(opt_.batch, opt_.seq_len, rng_);
  at::Tensor loss;
  {
    CudaAutocast ac(opt_.bf16 && model_->device().is_cuda());
    loss = loss_on(batch);
  }
  const bool ok =
      backward_clipped(*optimizer_, loss, model_->parameters(), opt_.clip, &r.loss, &r.grad_norm);
  if (ok) optimizer_->step();
  r.skipped = !ok;
  step_ = r.step;  // a skipped step still consumes its batch and schedule slot
  return r;
}

Trainer::EvalReport Trainer::evaluate() {
  torch::NoGradGuard g;
  EvalReport rep;
  double total = 0;
  int64_t n = 0;
  // eval_batches() yields eval_batches batches per evaluable domain, domains in order.
  const auto batches = corpus_.eval_batches(opt_.batch, opt_.seq_len, opt_.eval_batches);
  size_t bi = 0;
  for (const auto& d : corpus_.domains()) {
    if (static_cast<int64_t>(d.eval.size()) < opt_.seq_len + 1) continue;
    double sum = 0;
    int64_t windows = 0;
    for (int64_t i = 0; i < opt_.eval_batches && bi < batches.size(); ++i, ++bi) {
      const auto& b = batches[bi];
      auto logits =
          model_->forward_full(b.inputs.to(model_->device())).to(torch::kFloat32);  // [B, T, V]
      auto ce = torch::nn::functional::cross_entropy(logits.reshape({-1, logits.size(-1)}),
                                                     b.targets.to(model_->device()).reshape({-1}));
      sum += ce.item<double>() * b.inputs.size(0);
      windows += b.inputs.size(0);
    }
    if (windows == 0) continue;
    rep.per_domain.emplace_back(d.name, sum / windows);
    total += sum;
    n += windows;
  }
  rep.loss = n ? total / n : std::nan("");
  return rep;
}

void Trainer::save(const std::string& dir, const std::function<void(const std::string&)>& also_write) const {
  // Written whole into dir.partial, then swapped in with checksums (saved_folder.hpp): a crash
  // never leaves a half-written checkpoint, and the one before stays as dir.previous.
  const std::string tmp = files::begin_folder(dir);
  save_hf_checkpoint(tmp, *model_);
  files::make_dirs(trainer_dir(tmp));
  torch::save(*optimizer_, trainer_dir(tmp) + "/optimizer.pt");
  std::ostringstream rng_state;
  rng_state << rng_;
  nlohmann::json state{{"step", step_},
                       {"rng", rng_state.str()},
                       {"options",
                        {{"steps", opt_.steps},
                         {"batch", opt_.batch},
                         {"seq_len", opt_.seq_len},
                         {"lr", opt_.lr},
                         {"warmup", opt_.warmup},
                         {"seed", opt_.seed},
                         {"loss", opt_.loss}}}};
  std::ofstream(trainer_dir(tmp) + "/state.json") << state.dump(2) << "\n";
  if (also_write) also_write(tmp);
  files::commit_folder(dir);
}

std::string Trainer::checkpoint_to_resume(const std::string& dir, std::string* warning) {
  auto choice = files::choose_folder(dir);
  if (warning) *warning = choice.warning;
  return !choice.path.empty() && has_trainer_state(choice.path) ? choice.path : "";
}

bool Trainer::has_trainer_state(const std::string& dir) {
  return files::exists(trainer_dir(dir) + "/state.json");
}

void Trainer::resume(const std::string& dir) {
  const std::string file = trainer_dir(dir) + "/state.json";
  std::ifstream f(file);
  if (!f) throw Error(file + ": cannot open (not a checkpoint written by osd-train?)");
  try {
    nlohmann::json j;
    f >> j;
    step_ = j.at("step").get<int64_t>();
    std::istringstream rs(j.at("rng").get<std::string>());
    rs >> rng_;
    if (!rs) throw Error("bad rng state");
  } catch (const std::exception& e) {
    throw Error(file + ": " + e.what());
  }
  try {
    torch::load(*optimizer_, trainer_dir(dir) + "/optimizer.pt");
  } catch (const std::exception& e) {
    throw Error(trainer_dir(dir) + "/optimizer.pt: cannot load optimizer state: " + e.what());
  }
}

}  // namespace osd
