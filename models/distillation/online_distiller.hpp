#pragma once
// The training side of online distillation (plain libtorch; actors/distiller.cpp drives it).
//
// It owns a trainable float32 copy of one draft and its AdamW optimizer. update() takes a batch
// of buffered records, runs a few gradient steps of the chosen loss (linear warm-up, then
// constant lr as in the paper; gradient clipping), then guards the candidate: on the held-out
// records it compares the acceptance the traffic sees (sum_x min(p, q) for sampled requests,
// argmax agreement for greedy ones) of the candidate with the published draft's:
//   candidate >= published - guard_margin     -> published (guard_margin < 0 demands a gain),
//   and gain >= guard_z * its standard error     if the gain is also clear of the noise: paired
//                                                on the same records, with held-out requests as
//                                                the units (a request's records share one text);
//   candidate <  published - rollback_margin  -> "rejected by guard": rolled back to the published
//                                                weights, optimizer moments reset (a bad step);
//   in between                                -> "held": not published, but the trainable copy
//                                                keeps its progress, so gains smaller than one
//                                                update's noise accumulate until they show.
// A step whose loss or gradient is not finite is discarded before it touches the weights.
#include <ATen/core/Tensor.h>

#include <map>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "models/distillation/distill_buffer.hpp"
#include "models/distillation/losses.hpp"
#include "models/distillation/sequential_guard.hpp"
#include "models/core/transformer.hpp"

namespace torch::optim {
class AdamW;
}

namespace osd {

struct DistillOptions {
  DistillLoss loss = DistillLoss::forward_kl;
  double jsd_beta = 0.5;
  double lr = 1e-3;
  double weight_decay = 0.0;
  int64_t warmup_steps = 10;
  double clip = 1.0;             // max gradient norm
  int64_t batch = 64;            // records per gradient step
  int64_t steps_per_update = 4;  // gradient steps per update
  double guard_margin = -0.01;   // publish unless held-out acceptance drops by more than this (< 0: must gain)
  double rollback_margin = 0.05;  // roll back when held-out acceptance drops by more than this
  int64_t min_heldout = 8;       // fewer held-out records: keep training, publish nothing yet
  bool inject_nan = false;       // tests: every loss becomes NaN
  // CUDA: the forwards (training and the guard's) run in bf16 autocast, float32 weights and
  // optimizer; false trains in float32 throughout (a comparison switch). CPU: ignored.
  bool autocast = true;
  // The guard scores the published draft on each held-out record once, and keeps the score until
  // the published weights change (a publish hands it the candidate's scores, which were computed
  // with the same weights): each update then runs one held-out forward instead of two, plus one
  // over the records new to the held-out slice. false rescores every record every update.
  bool cache_published_scores = true;
  // A publish also needs gain >= guard_z standard errors of the paired gain (paired_gain); 0: off.
  // Without it a candidate could win by one update's noise on a small slice and serve worse.
  double guard_z = 2.0;
  // The sequential guard (sequential_guard.hpp) instead of min_heldout and guard_z: it decides
  // from min_units held-out requests on, at a threshold that keeps the false-publish rate between
  // two publishes at most sequential.alpha whatever the number of looks.
  bool sequential_guard = false;
  SequentialGuardOptions sequential;
};

struct UpdateReport {
  bool published = false;
  std::string decision;  // published | held | rejected by guard | deferred: ... | discarded: ...
  double loss = 0;               // mean loss of the finite steps
  double acceptance_candidate = -1, acceptance_current = -1;  // on held-out (-1: not evaluated)
  int64_t version = 0;           // published version after this update
  int64_t steps = 0, discarded_steps = 0;
  int64_t heldout_rescored = 0;  // held-out records the published draft was scored on this update
  double gain_stderr = -1;       // standard error of candidate - published (-1: not evaluated)
  double threshold_z = -1;       // the standard errors the gain needed (-1: not evaluated)
  int64_t heldout_units = 0;     // held-out requests the guard judged on
  // Held, but gaining: at least one standard error and 0.001 above the published draft. The
  // distiller does not back off for such an update (its candidate is improving, not yet proven).
  bool promising = false;
};

// The candidate's gain over the published draft on the same held-out records (the mean of the
// per-record differences) and its standard error with requests as the units: records of one
// request are prefixes of one text, so they are not independent. The error is the cluster-robust
// one of the record mean, sqrt(G / (G - 1) * sum_r (sum_{i in r} (d_i - gain))^2) / N over G
// requests and N records; with fewer than two requests, the records are the units.
struct GuardGain {
  double gain = 0, stderr_ = 0;
  int64_t units = 0;
};
GuardGain paired_gain(const std::vector<double>& candidate, const std::vector<double>& published,
                      const std::vector<int64_t>& requests);

class OnlineDistiller {
 public:
  OnlineDistiller(const Transformer& draft, DistillOptions options, c10::Device device = c10::Device(c10::kCPU),
                  int64_t start_version = 0);
  ~OnlineDistiller();

  UpdateReport update(const std::vector<DistillRecord>& batch, const std::vector<DistillRecord>& heldout);
  // One training step's work on synthetic records of a minibatch's size (forward, loss,
  // backward, an AdamW step of a throwaway optimizer at learning rate 0, the guard's forward), so
  // that the first real update does not pay for CUDA's lazy kernel loading and the allocator's
  // first blocks while verification runs beside it (on an H100 the first update took 367 ms and
  // stalled the rounds beside it: a proposal took 52 ms, a verification 32 ms;
  // docs/results/history/NOTEBOOK.md). Weights, optimizer state and version stay exactly as they
  // were.
  void warm_up();
  // The published weights as a new immutable model for the drafter.
  std::shared_ptr<Transformer> snapshot(c10::Device device, c10::ScalarType dtype) const;
  int64_t version() const { return version_; }
  int64_t total_steps() const { return step_; }
  using RecordKey =
      std::tuple<int64_t, int64_t, uint64_t>;  // request, context length, context hash

  // Persistence. dir/draft/ holds the published draft (HF config.json + model.safetensors), the
  // AdamW state of the trainable copy (optimizer.pt) and state.json (version, steps), written as
  // a whole with checksums (models/common/saved_folder.hpp); dir/draft.previous keeps the save
  // before it. A crash at any moment of save() leaves one of them complete.
  static constexpr const char* kSavedFolder = "draft";
  void save(const std::string& dir) const;
  // The saved state restore() reads: dir/draft, or dir/draft.previous when the newest is torn or
  // corrupt (warning says what was wrong), or the older layout with the files in dir itself.
  // version -1: nothing saved. Throws osd::Error naming the files when a saved state exists but
  // no version of it is usable.
  struct SavedState {
    std::string path;
    int64_t version = -1;
    std::string warning;
  };
  static SavedState find_saved(const std::string& dir);
  // Restores a distiller saved by save(); throws osd::Error naming the file on failure.
  static std::unique_ptr<OnlineDistiller> restore(const std::string& dir, DistillOptions options, c10::Device device);
  // find_saved(dir).version.
  static int64_t saved_version(const std::string& dir);
  // Held-out acceptance of a model on records, as the traffic sees it (traffic_acceptance).
  // autocast: forward in bf16 autocast when model is on CUDA.
  static double heldout_acceptance(Transformer& model, const std::vector<DistillRecord>& records,
                                   bool autocast = false);
  // The same per record: 1/0 argmax agreement for greedy records, sum_x min(p, q) for the others.
  static std::vector<double> heldout_scores(Transformer& model,
                                            const std::vector<DistillRecord>& records,
                                            bool autocast = false);
  // Student logits at each record's last context position: [N, V].
  static at::Tensor student_logits(Transformer& model, const std::vector<DistillRecord>& records);

 private:
  void reset_optimizer();
  bool autocast_on() const { return opt_.autocast && device_.is_cuda(); }
  // The distillation loss of the trainable copy on a minibatch of records (a scalar).
  at::Tensor minibatch_loss(const std::vector<DistillRecord>& mb);
  DistillOptions opt_;
  c10::Device device_;
  std::shared_ptr<Transformer> trainable_;  // float32, requires grad
  std::shared_ptr<Transformer> published_;  // float32 copy of the last published weights
  std::unique_ptr<torch::optim::AdamW> optimizer_;
  // The published draft's held-out scores by record (RecordKey): valid until the published
  // weights change.
  std::map<RecordKey, double> published_scores_;
  // The published draft's score on each held-out record (keys: their RecordKeys, empty when the
  // cache is off), from the cache where it can; counts the records rescored.
  std::vector<double> published_scores(const std::vector<DistillRecord>& heldout,
                                       const std::vector<RecordKey>& keys, int64_t* rescored);
  int64_t version_ = 0, step_ = 0;
  // The sequential guard's looks since the last publish, and the newest held-out request at the
  // last one.
  int64_t looks_ = 0, newest_at_look_ = 0;
};

}  // namespace osd
