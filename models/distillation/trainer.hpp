#pragma once
// Offline training for osd-train: pretraining on text (next-token cross-entropy) or offline
// distillation of a draft from a teacher model (the online distiller's losses over the whole
// vocabulary at every position). AdamW, linear warm-up + cosine decay, gradient clipping
// (models/distillation/optim.hpp, shared with the online distiller), bf16 autocast on CUDA, periodic eval
// loss, HF-format checkpoints, resumable.
//
//   Trainer t(model, options, corpus);            // model: float32, trained in place
//   while (t.step() < options.steps) t.train_step();
//   t.save(dir);                                   // dir/config.json, model.safetensors, trainer/
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <random>
#include <string>

#include "models/distillation/losses.hpp"
#include "models/distillation/text_corpus.hpp"
#include "models/core/transformer.hpp"

namespace torch::optim {
class AdamW;
}

namespace osd {

struct TrainOptions {
  int64_t steps = 1000;
  int64_t batch = 16;     // windows per step
  int64_t seq_len = 256;  // tokens per window
  double lr = 3e-3;
  double min_lr_ratio = 0.1;  // cosine decays to lr * this
  int64_t warmup = 50;
  double weight_decay = 0.1;
  double clip = 1.0;
  int64_t eval_every = 100;  // 0: only at the end
  int64_t eval_batches = 4;  // per domain
  uint64_t seed = 0;
  // "ce" (pretraining) or a distillation loss (fkl, rkl, jsd, tvd), which needs a teacher.
  std::string loss = "ce";
  double jsd_beta = 0.5;
  bool bf16 = true;  // autocast to bf16 on CUDA (CPU trains in float32)
  // Throws osd::Error on the first unusable value.
  void validate() const;
};

struct StepReport {
  int64_t step = 0;
  double loss = 0, lr = 0, grad_norm = 0;
  bool skipped = false;  // non-finite loss or gradient: the step was not applied
};

class Trainer {
 public:
  // model: float32 weights, trained in place. teacher (optional): same vocabulary, frozen.
  Trainer(std::shared_ptr<Transformer> model, TrainOptions options, const TextCorpus& corpus,
          std::shared_ptr<Transformer> teacher = nullptr);
  ~Trainer();

  StepReport train_step();
  // Mean next-token cross-entropy (nats/token) per domain and overall on the eval windows.
  struct EvalReport {
    double loss = 0;
    std::vector<std::pair<std::string, double>> per_domain;
  };
  EvalReport evaluate();

  int64_t step() const { return step_; }
  int64_t tokens_seen() const { return step_ * opt_.batch * opt_.seq_len; }
  const TrainOptions& options() const { return opt_; }
  Transformer& model() { return *model_; }

  // dir/config.json + dir/model.safetensors (HF format; loadable by osd-serve and transformers)
  // and dir/trainer/{optimizer.pt,state.json} for resume, written whole with checksums
  // (models/common/saved_folder.hpp; the checkpoint before stays as dir.previous). also_write
  // adds files to the folder before it is sealed (e.g. the tokenizer's).
  void save(const std::string& dir, const std::function<void(const std::string&)>& also_write = {}) const;
  // The folder --resume reads: dir, or dir.previous when dir is torn or corrupt (*warning says
  // why), or "" when neither holds a trainer state.
  static std::string checkpoint_to_resume(const std::string& dir, std::string* warning);
  // Restores step, RNG position and optimizer state saved by save() into this trainer (whose
  // model was loaded from the same dir). Throws osd::Error naming the file on failure.
  void resume(const std::string& dir);
  static bool has_trainer_state(const std::string& dir);

 private:
  at::Tensor loss_on(const TokenBatch& batch);
  std::shared_ptr<Transformer> model_, teacher_;
  TrainOptions opt_;
  const TextCorpus& corpus_;
  std::unique_ptr<torch::optim::AdamW> optimizer_;
  std::mt19937_64 rng_;
  int64_t step_ = 0;
};

}  // namespace osd
