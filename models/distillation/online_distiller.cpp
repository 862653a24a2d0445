#include "models/distillation/online_distiller.hpp"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include "models/core/autocast.hpp"
#include "models/weights/hf_checkpoint.hpp"
#include "models/distillation/optim.hpp"
#include "models/core/tensor_util.hpp"

#include "models/common/error.hpp"
#include "models/common/files.hpp"
#include "models/common/saved_folder.hpp"

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

std::vector<double> OnlineDistiller::heldout_scores(Transformer& model,
                                                    const std::vector<DistillRecord>& records,
                                                    bool autocast) {
  if (records.empty()) return {};
  torch::NoGradGuard g;
  CudaAutocast scope(autocast && model.device().is_cuda());
  bool all_greedy = true;
  std::vector<int64_t> teacher_best;
  for (const auto& r : records) {
    all_greedy = all_greedy && r.greedy && !r.top_ids.empty();
    if (all_greedy) teacher_best.push_back(r.top_ids[0]);  // top_ids are sorted: [0] is the argmax
  }
  at::Tensor scores;  // [N]
  if (all_greedy) {   // argmax agreement: no need to rebuild the teacher's [N, V] distributions
    auto best = student_logits(model, records).argmax(-1);  // [N]
    scores = best.eq(to_device(torch::tensor(teacher_best), best.device()));
  } else {
    auto q = torch::softmax(student_logits(model, records).to(torch::kFloat32), -1);
    auto p = to_device(rebuild_distributions(records, model.config().vocab_size), q.device());
    std::vector<bool> greedy;
    for (const auto& r : records) greedy.push_back(r.greedy);
    scores = traffic_acceptance_rows(q, p, greedy);
  }
  auto host = scores.to(torch::kFloat64).cpu().contiguous();
  return std::vector<double>(host.data_ptr<double>(), host.data_ptr<double>() + host.numel());
}

namespace {
double mean_of(const std::vector<double>& v) {
  double sum = 0;
  for (double x : v) sum += x;
  return v.empty() ? 0.0 : sum / static_cast<double>(v.size());
}

// A record's identity: its request, its length and a hash of its context (records made outside
// the verifier need not name distinct requests).
OnlineDistiller::RecordKey record_key(const DistillRecord& r) {
  uint64_t h = 1469598103934665603ull;  // FNV-1a over the context's tokens
  for (int64_t t : r.context) {
    h ^= static_cast<uint64_t>(t);
    h *= 1099511628211ull;
  }
  return {r.source, static_cast<int64_t>(r.context.size()), h};
}
}  // namespace

double OnlineDistiller::heldout_acceptance(Transformer& model,
                                           const std::vector<DistillRecord>& records,
                                           bool autocast) {
  return mean_of(heldout_scores(model, records, autocast));
}

GuardGain paired_gain(const std::vector<double>& candidate, const std::vector<double>& published,
                      const std::vector<int64_t>& requests) {
  GuardGain g;
  const size_t n = candidate.size();
  if (n == 0 || published.size() != n || requests.size() != n) return g;
  std::vector<double> d(n);  // per record: candidate - published
  for (size_t i = 0; i < n; ++i) d[i] = candidate[i] - published[i];
  g.gain = mean_of(d);
  std::map<int64_t, double> residual;  // per request: the sum of d_i - gain over its records
  for (size_t i = 0; i < n; ++i) residual[requests[i]] += d[i] - g.gain;
  double ss = 0;
  if (residual.size() >= 2) {
    for (const auto& [request, r] : residual) ss += r * r;
    g.units = static_cast<int64_t>(residual.size());
  } else {  // one request: the records are the units
    for (double x : d) ss += (x - g.gain) * (x - g.gain);
    g.units = static_cast<int64_t>(n);
  }
  if (g.units < 2) return g;
  const double G = static_cast<double>(g.units);
  g.stderr_ = std::sqrt(G / (G - 1) * ss) / static_cast<double>(n);
  return g;
}

std::vector<double> OnlineDistiller::published_scores(const std::vector<DistillRecord>& heldout,
                                                      const std::vector<RecordKey>& keys,
                                                      int64_t* rescored) {
  if (!opt_.cache_published_scores) {
    *rescored = static_cast<int64_t>(heldout.size());
    return heldout_scores(*published_, heldout, autocast_on());
  }
  std::map<RecordKey, double> kept;  // only the records still held out
  std::vector<DistillRecord> missing;
  std::vector<RecordKey> missing_keys;
  std::set<RecordKey> seen;
  for (size_t i = 0; i < heldout.size(); ++i) {
    if (!seen.insert(keys[i]).second) continue;  // a record twice: scored once
    auto it = published_scores_.find(keys[i]);
    if (it != published_scores_.end()) {
      kept.insert(*it);
    } else {
      missing.push_back(heldout[i]);
      missing_keys.push_back(keys[i]);
    }
  }
  const auto fresh = heldout_scores(*published_, missing, autocast_on());
  for (size_t i = 0; i < missing.size(); ++i) kept[missing_keys[i]] = fresh[i];
  *rescored = static_cast<int64_t>(missing.size());
  published_scores_ = std::move(kept);
  std::vector<double> out;
  out.reserve(keys.size());
  for (const auto& k : keys) out.push_back(published_scores_.at(k));
  return out;
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
  std::set<int64_t> heldout_requests;
  for (const auto& r : heldout) heldout_requests.insert(r.source);
  const bool too_small = opt_.sequential_guard
                             ? static_cast<int64_t>(heldout_requests.size()) < opt_.sequential.min_units
                             : static_cast<int64_t>(heldout.size()) < opt_.min_heldout;
  if (too_small) {
    rep.decision = "deferred: held-out slice too small";  // keep training; publish once it is evaluable
    return rep;
  }
  const auto candidate = heldout_scores(*trainable_, heldout, autocast_on());
  rep.acceptance_candidate = mean_of(candidate);
  std::vector<RecordKey> keys;  // the cache's keys, hashed once an update
  if (opt_.cache_published_scores)
    for (const auto& r : heldout) keys.push_back(record_key(r));
  const auto current = published_scores(heldout, keys, &rep.heldout_rescored);
  rep.acceptance_current = mean_of(current);
  std::vector<int64_t> requests;
  for (const auto& r : heldout) requests.push_back(r.source);
  const auto paired = paired_gain(candidate, current, requests);
  rep.gain_stderr = paired.stderr_;
  rep.heldout_units = paired.units;
  // A look is counted when the slice holds a request it did not hold at the last look (sources
  // are sequence ids, which only grow): every test on new evidence spends its share of alpha.
  // A candidate is tested only then; updates in between keep training without a test.
  const int64_t newest = heldout_requests.empty() ? 0 : *heldout_requests.rbegin();
  const bool look = opt_.sequential_guard && (looks_ == 0 || newest > newest_at_look_);
  if (look) ++looks_, newest_at_look_ = newest;
  rep.threshold_z = opt_.sequential_guard ? sequential_guard_z(std::max<int64_t>(looks_, 1), paired.units,
                                                               opt_.sequential.alpha)
                                          : opt_.guard_z;
  if (!std::isfinite(rep.acceptance_candidate) ||
      rep.acceptance_candidate <
          rep.acceptance_current - std::max(opt_.rollback_margin, opt_.guard_margin)) {
    trainable_->copy_weights_from(*published_);  // roll back to the last good weights
    reset_optimizer();
    rep.decision = "rejected by guard";
    return rep;
  }
  const bool clear =
      opt_.sequential_guard
          ? look && sequential_guard_publishes(paired.gain, paired.stderr_, paired.units, looks_,
                                               opt_.sequential)
          : rep.acceptance_candidate >= rep.acceptance_current - opt_.guard_margin &&
                paired.gain >= opt_.guard_z * paired.stderr_;
  if (!clear) {
    rep.decision = "held";  // no clear gain yet: keep training from here, publish nothing
    rep.promising = paired.gain > 1e-3 && paired.gain >= paired.stderr_;
    return rep;
  }
  published_->copy_weights_from(*trainable_);
  published_scores_.clear();  // the candidate's scores are the new published draft's
  for (size_t i = 0; i < keys.size(); ++i) published_scores_[keys[i]] = candidate[i];
  rep.published = true;
  rep.version = ++version_;
  looks_ = 0;  // a new epoch of looks against the new published draft, from the same slice
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
  const std::string folder = dir + "/" + kSavedFolder;
  const std::string staging = files::begin_folder(folder);
  save_hf_checkpoint(staging, *published_);
  torch::save(*optimizer_, staging + "/optimizer.pt");
  std::ofstream(staging + "/state.json") << nlohmann::json{{"version", version_}, {"steps", step_}}.dump() << "\n";
  files::commit_folder(folder);
}

OnlineDistiller::SavedState OnlineDistiller::find_saved(const std::string& dir) {
  SavedState out;
  auto choice = files::choose_folder(dir + "/" + kSavedFolder);
  if (choice.path.empty() && !choice.warning.empty())
    throw Error("no usable saved state in " + dir + ": " + choice.warning + " (move " + dir +
                " aside to start from the configured draft)");
  if (choice.path.empty()) {
    if (!files::exists(dir + "/state.json")) return out;  // nothing saved
    choice.path = dir;  // the layout before saved folders: the files in dir itself
  }
  const std::string file = choice.path + "/state.json";
  try {
    out.version = files::read_json(file).at("version").get<int64_t>();
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    throw Error(file + ": " + e.what());
  }
  out.path = choice.path;
  out.warning = choice.warning;
  return out;
}

int64_t OnlineDistiller::saved_version(const std::string& dir) { return find_saved(dir).version; }

std::unique_ptr<OnlineDistiller> OnlineDistiller::restore(const std::string& dir, DistillOptions options,
                                                          c10::Device device) {
  const auto saved = find_saved(dir);
  if (saved.version < 0) throw Error(dir + ": no saved state");
  auto weights = load_hf_checkpoint(saved.path, device, DType::f32);
  nlohmann::json j = files::read_json(saved.path + "/state.json");
  auto d = std::make_unique<OnlineDistiller>(*weights, options, device, saved.version);
  d->step_ = j.value("steps", int64_t{0});
  try {
    torch::load(*d->optimizer_, saved.path + "/optimizer.pt");
  } catch (const std::exception& e) {
    throw Error(saved.path + "/optimizer.pt: cannot load optimizer state: " + e.what());
  }
  return d;
}

std::shared_ptr<Transformer> OnlineDistiller::snapshot(c10::Device device, c10::ScalarType dtype) const {
  return published_->clone(device, dtype);
}

}  // namespace osd
