#include "models/online_distiller.hpp"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>

#include "models/autocast.hpp"
#include "models/hf_checkpoint.hpp"
#include "models/optim.hpp"
#include "models/tensor_util.hpp"

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
  optimizer_ = make_adamw(trainable_->parameters(), opt_.lr, opt_.weight_decay);
}

at::Tensor OnlineDistiller::student_logits(Transformer& model, const std::vector<DistillRecord>& records) {
  // Records of one request are prefixes of its final text (accepted draft tokens are the target's
  // tokens), so one forward over the longest context serves them all: sort the contexts; an
  // extension of a context follows it directly, so each record is hosted by its successor's host
  // when it is a prefix of the successor.
  const int64_t N = static_cast<int64_t>(records.size());
  std::vector<int64_t> order(N);
  for (int64_t i = 0; i < N; ++i) {
    if (records[i].context.empty()) throw Error("distillation record with an empty context");
    order[i] = i;
  }
  std::sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return records[a].context < records[b].context; });
  std::vector<int64_t> host(N, -1), hosts;  // host[i]: row of the forward batch
  for (int64_t s = N - 1; s >= 0; --s) {
    const auto& c = records[order[s]].context;
    if (s + 1 < N) {
      const auto& next = records[order[s + 1]].context;
      if (next.size() >= c.size() && std::equal(c.begin(), c.end(), next.begin())) {
        host[order[s]] = host[order[s + 1]];
        continue;
      }
    }
    host[order[s]] = static_cast<int64_t>(hosts.size());
    hosts.push_back(order[s]);
  }
  const int64_t H = static_cast<int64_t>(hosts.size());
  int64_t T = 1;
  for (auto h : hosts) T = std::max<int64_t>(T, records[h].context.size());
  auto tokens = torch::zeros({H, T}, torch::kInt64);
  auto acc = tokens.accessor<int64_t, 2>();
  for (int64_t r = 0; r < H; ++r) {
    const auto& c = records[hosts[r]].context;
    for (size_t t = 0; t < c.size(); ++t) acc[r][t] = c[t];
  }
  std::vector<int64_t> flat(N);  // row * T + last position of each record
  for (int64_t i = 0; i < N; ++i) flat[i] = host[i] * T + static_cast<int64_t>(records[i].context.size()) - 1;
  auto logits = model.forward_full(
      to_device(tokens, model.device()));  // [H, T, V] (right padding is causal-safe)
  auto idx = to_device(torch::tensor(flat), logits.device());
  return logits.reshape({H * T, logits.size(2)}).index_select(0, idx);           // [N, V]
}

double OnlineDistiller::heldout_acceptance(Transformer& model,
                                           const std::vector<DistillRecord>& records,
                                           bool autocast) {
  torch::NoGradGuard g;
  CudaAutocast scope(autocast && model.device().is_cuda());
  bool all_greedy = !records.empty();
  std::vector<int64_t> teacher_best;
  for (const auto& r : records) {
    all_greedy = all_greedy && r.greedy && !r.top_ids.empty();
    if (all_greedy) teacher_best.push_back(r.top_ids[0]);  // top_ids are sorted: [0] is the argmax
  }
  if (all_greedy) {  // argmax agreement: no need to rebuild the teacher's [N, V] distributions
    auto best = student_logits(model, records).argmax(-1);  // [N]
    return best.eq(to_device(torch::tensor(teacher_best), best.device()))
        .to(torch::kFloat64)
        .mean()
        .item<double>();
  }
  auto q = torch::softmax(student_logits(model, records).to(torch::kFloat32), -1);
  auto p = to_device(rebuild_distributions(records, model.config().vocab_size), q.device());
  std::vector<bool> greedy;
  for (const auto& r : records) greedy.push_back(r.greedy);
  return traffic_acceptance(q, p, greedy);
}

at::Tensor OnlineDistiller::minibatch_loss(const std::vector<DistillRecord>& mb) {
  auto teacher = to_device(rebuild_distributions(mb, trainable_->config().vocab_size), device_);
  at::Tensor student;  // [N, V]
  {
    CudaAutocast scope(autocast_on());  // the backward follows the forward's casts
    student = student_logits(*trainable_, mb);
  }
  return distill_loss(opt_.loss, student.to(torch::kFloat32), teacher, opt_.jsd_beta);
}

UpdateReport OnlineDistiller::update(const std::vector<DistillRecord>& batch, const std::vector<DistillRecord>& heldout) {
  UpdateReport rep;
  rep.version = version_;
  if (batch.empty()) {
    rep.decision = "no data";
    return rep;
  }
  double loss_sum = 0;
  for (int64_t s = 0; s < opt_.steps_per_update; ++s) {
    // Minibatch: a window of the batch, rotating through it.
    std::vector<DistillRecord> mb;
    for (int64_t i = 0; i < opt_.batch; ++i) mb.push_back(batch[(s * opt_.batch + i) % batch.size()]);
    auto loss = minibatch_loss(mb);
    if (opt_.inject_nan) loss = loss * std::numeric_limits<float>::quiet_NaN();
    double lv = 0;
    if (!backward_clipped(*optimizer_, loss, trainable_->parameters(), opt_.clip, &lv, nullptr)) {
      ++rep.discarded_steps;  // discard: the weights and the optimizer's moments are untouched
      continue;
    }
    ++step_;
    set_learning_rate(*optimizer_, scheduled_lr(step_, opt_.warmup_steps, 0, opt_.lr, 1.0));
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
  rep.acceptance_candidate = heldout_acceptance(*trainable_, heldout, autocast_on());
  rep.acceptance_current = heldout_acceptance(*published_, heldout, autocast_on());
  if (!std::isfinite(rep.acceptance_candidate) ||
      rep.acceptance_candidate <
          rep.acceptance_current - std::max(opt_.rollback_margin, opt_.guard_margin)) {
    trainable_->copy_weights_from(*published_);  // roll back to the last good weights
    reset_optimizer();
    rep.decision = "rejected by guard";
    return rep;
  }
  if (rep.acceptance_candidate < rep.acceptance_current - opt_.guard_margin) {
    rep.decision = "held";  // no clear gain yet: keep training from here, publish nothing
    return rep;
  }
  published_->copy_weights_from(*trainable_);
  rep.published = true;
  rep.version = ++version_;
  rep.decision = "published";
  return rep;
}

void OnlineDistiller::warm_up() {
  const int64_t V = trainable_->config().vocab_size;
  const int64_t max_pos = trainable_->config().max_position_embeddings;
  // Requests' records: each request contributes the prefixes of one text (as the verifier's
  // records do), 16 records a request, contexts of a few hundred tokens.
  std::vector<DistillRecord> mb;
  const int64_t top = std::min<int64_t>(8, V);
  for (int64_t i = 0; static_cast<int64_t>(mb.size()) < std::max<int64_t>(1, opt_.batch); ++i) {
    const int64_t request = i / 16, length = std::min<int64_t>(max_pos, 96 + 16 * request + i % 16);
    DistillRecord r;
    for (int64_t t = 0; t < length; ++t) r.context.push_back((request * 31 + t * 7) % V);
    for (int64_t j = 0; j < top; ++j) {
      r.top_ids.push_back(j);
      r.top_probs.push_back(1.0f / static_cast<float>(top));
    }
    r.greedy = true;
    r.source = request;
    mb.push_back(std::move(r));
  }
  auto params = trainable_->parameters();
  auto throwaway = make_adamw(params, 0.0, opt_.weight_decay);  // lr 0: no weight moves
  if (backward_clipped(*throwaway, minibatch_loss(mb), params, opt_.clip, nullptr, nullptr))
    throwaway->step();
  throwaway->zero_grad();
  optimizer_->zero_grad();
  heldout_acceptance(*trainable_, mb, autocast_on());
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
