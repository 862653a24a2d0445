// Runtime::create: checks the options, restores saved drafts, spawns and wires the actors
// (docs/ARCHITECTURE.md has the picture), waits until the verifier and then the distillers are
// ready, and puts everything under the supervisor. One step a function, in the order they run.
#include <nlohmann/json.hpp>
#include <optional>
#include <thread>

#include "actors/buffer.hpp"
#include "actors/client_bridge.hpp"
#include "actors/distiller.hpp"
#include "actors/drafter.hpp"
#include "actors/intake.hpp"
#include "actors/messages.hpp"
#include "actors/metrics.hpp"
#include "actors/relay.hpp"
#include "actors/router.hpp"
#include "actors/verifier.hpp"
#include "models/common/log.hpp"
#include "models/core/transformer.hpp"
#include "models/distillation/losses.hpp"
#include "models/distillation/online_distiller.hpp"
#include "models/text/stream_decoder.hpp"
#include "models/weights/hf_checkpoint.hpp"
#include "runtime/runtime_impl.hpp"

namespace osd {

namespace {

// The options' errors, "" when they are usable. Adds the "default" route of a lone draft.
std::string check_options(RuntimeOptions& o) {
  if (!o.target) return "RuntimeOptions.target is required";
  if (o.routes.empty() && o.draft) o.routes.push_back(DraftRoute{"default", o.draft});
  for (size_t r = 0; r < o.routes.size(); ++r) {
    const auto& route = o.routes[r];
    if (route.name.empty()) return "route " + std::to_string(r) + " has no name";
    if (!route.draft) return "route '" + route.name + "' has no draft model";
    if (route.draft->config().vocab_size != o.target->config().vocab_size)
      return "draft and target vocabularies differ (route '" + route.name + "')";
    for (size_t q = 0; q < r; ++q)
      if (o.routes[q].name == route.name) return "two routes are named '" + route.name + "'";
  }
  if (o.max_batch < 1 || o.max_batch > 4096) return "max_batch must be in [1, 4096]";
  if (o.max_len < 2 || o.max_len > (1 << 20)) return "max_len must be in [2, 2^20]";
  if (o.k < 0 || o.k > 64 || o.k_max < 0 || o.k_max > 64) return "k and k_max must be in [0, 64]";
  if (o.groups < 1 || o.groups > 16) return "groups must be in [1, 16]";
  if (o.scheduler != "sharing" && o.scheduler != "stealing")
    return "scheduler must be sharing or stealing (got '" + o.scheduler + "')";
  if (o.max_in_flight < 1) return "max_in_flight must be >= 1";
  if (o.max_new_tokens_limit < 1) return "max_new_tokens_limit must be >= 1";
  if (o.max_id_bytes < 1) return "max_id_bytes must be >= 1";
  if (o.max_restarts < 0) return "max_restarts must be >= 0";
  if (o.router_eval_every < 0 || o.router_eval_warmup < 0) return "router_eval_every/warmup must be >= 0";
  if (!o.online.enabled) return "";
  const auto& on = o.online;
  if (o.routes.empty()) return "online distillation needs a draft model";
  if (!parse_distill_loss(on.loss)) return "online.loss must be fkl, rkl, jsd or tvd (got '" + on.loss + "')";
  if (!(on.lr > 0) || on.lr > 1e6) return "online.lr must be in (0, 1e6]";
  if (!(on.max_duty > 0) || on.max_duty > 1) return "online.max_duty must be in (0, 1]";
  if (on.batch < 1 || on.steps_per_update < 1 || on.min_new_records < 1)
    return "online.batch, steps_per_update and min_new_records must be >= 1";
  if (on.buffer_bytes < 1024) return "online.buffer_bytes must be >= 1024";
  if (on.update_every_ms < 0) return "online.update_every_ms must be >= 0";
  if (on.distiller_multiprocessors < 0 || on.distiller_multiprocessors > 4096)
    return "online.distiller_multiprocessors must be in [0, 4096] (0: the whole GPU)";
  return "";
}

std::string route_state_dir(const RuntimeOptions& o, size_t r) {
  return o.online.state_dir + "/route-" + o.routes[r].name;
}

// A saved online-distillation state replaces a route's draft weights and sets its version: the
// newest intact version (a torn or corrupt save falls back to the one before, with a warning).
// Returns the error, "" on success.
std::string restore_saved_drafts(RuntimeOptions& o, std::vector<int64_t>& versions) {
  if (!o.online.enabled || o.online.state_dir.empty()) return "";
  for (size_t r = 0; r < o.routes.size(); ++r) {
    try {
      const auto saved = OnlineDistiller::find_saved(route_state_dir(o, r));
      if (saved.version < 0) continue;
      if (!saved.warning.empty()) log::warn("route '" + o.routes[r].name + "': " + saved.warning);
      versions[r] = saved.version;
      auto& d = o.routes[r].draft;
      d = load_hf_checkpoint(saved.path, d->device(), d->config().dtype);
      log::info(log::cat("route '", o.routes[r].name, "': restored draft version ", saved.version, " from ",
                         saved.path));
    } catch (const std::exception& e) {
      return "cannot restore the online draft of route '" + o.routes[r].name + "': " + e.what();
    }
  }
  return "";
}

// The context a request must fit: the KV cache positions per sequence and every model's
// max_position_embeddings (a draft proposes at the same positions as the target).
int64_t request_context(const RuntimeOptions& o) {
  int64_t context = std::min(o.max_len, o.target->config().max_position_embeddings);
  for (const auto& route : o.routes) context = std::min(context, route.draft->config().max_position_embeddings);
  return context;
}

// A drafter's options: the ones the runtime's first drafters and their restarts share, with the
// distillers' share to serve beside (0: the whole GPU).
DrafterOptions drafter_options(const RuntimeOptions& o, int beside, int64_t fail_on,
                               int64_t version) {
  DrafterOptions d;
  d.num_slots = o.max_batch;
  d.max_len = o.max_len;
  d.fail_on_proposal = fail_on;
  d.version = version;
  d.trace = o.trace;
  d.beside_multiprocessors = beside;
  d.warm_attention_plans = o.warm_attention_plans;
  return d;
}

// Metrics, intake, the client bridge and one drafter per route.
void spawn_front(Runtime::Impl& impl, const RuntimeOptions& o, const std::vector<int64_t>& versions,
                 int beside) {
  auto& sys = *impl.sys;
  const int64_t context = request_context(o);
  if (o.max_new_tokens_limit >= context)
    log::warn(log::cat("max_new_tokens_limit (", o.max_new_tokens_limit, ") is not below the context (", context,
                       " tokens): requests are limited by prompt + max_new_tokens <= ", context));
  IntakeOptions io;
  io.max_in_flight = o.max_in_flight;
  io.max_new_tokens = o.max_new_tokens_limit;
  io.vocab_size = o.target->config().vocab_size;
  io.context = context;
  io.has_tokenizer = static_cast<bool>(o.token_text) || o.tokenizer != nullptr;
  impl.metrics = spawn_metrics(sys);
  impl.intake = spawn_intake(sys, io);
  impl.bridge = spawn_client_bridge(sys, impl.intake, BridgeOptions{static_cast<size_t>(o.max_id_bytes)});
  for (size_t r = 0; r < o.routes.size(); ++r) {
    impl.route_names.push_back(o.routes[r].name);
    const int64_t fail_on = r == 0 ? o.inject_drafter_failure : -1;
    impl.drafters.push_back(spawn_drafter(sys, o.routes[r].draft, drafter_options(o, beside, fail_on, versions[r])));
  }
  caf::anon_send(impl.metrics, route_atom_v, impl.route_names, versions);  // metric labels
}

VerifierOptions verifier_options(const Runtime::Impl& impl, const RuntimeOptions& o,
                                 const std::vector<int64_t>& versions, int beside) {
  VerifierOptions vo;
  vo.num_slots = o.max_batch;
  vo.max_len = o.max_len;
  vo.scheduler.adaptive = o.adaptive_k;
  vo.scheduler.fixed_k = o.k;
  vo.scheduler.k_max = std::max(o.k_max, o.k);
  vo.scheduler.max_cohorts = o.groups;
  vo.scheduler.k_override = o.k_override;
  vo.prefill_chunk = o.prefill_chunk;
  int64_t draft_context = o.max_len;
  for (const auto& route : o.routes)
    draft_context = std::min(draft_context, route.draft->config().max_position_embeddings);
  vo.draft_context = draft_context;
  vo.token_text = o.token_text;
  if (o.tokenizer)
    vo.text_stream = [tok = o.tokenizer](const std::vector<int64_t>& prompt) -> std::function<std::string(int64_t)> {
      auto stream = std::make_shared<StreamDecoder>(tok, prompt);
      return [stream](int64_t t) { return stream->push(t); };
    };
  vo.fail_on_round = o.inject_verifier_failure;
  // The verifier gives up the distillers' share only on a device where a distiller trains (each
  // trains where its route's draft runs).
  bool distiller_beside_target = false;
  for (const auto& route : o.routes)
    distiller_beside_target = distiller_beside_target || route.draft->device() == o.target->device();
  vo.beside_multiprocessors = distiller_beside_target ? beside : 0;
  vo.trace = o.trace;
  vo.warm_attention_plans = o.warm_attention_plans;
  vo.record_all_positions = o.online.record_all_positions;
  vo.record_prompt_positions = o.online.enabled ? o.online.record_prompt_positions : 0;
  vo.record_top_k = o.online.record_top_k;
  vo.record_plain_every = o.online.enabled ? o.online.record_plain_every : 0;
  vo.route_names = impl.route_names;
  vo.draft_versions = versions;
  if (!o.routes.empty()) {
    caf::actor_system* sys_ptr = impl.sys.get();
    vo.drafter_factory = [sys_ptr, routes = o.routes, o, beside](
                             int64_t r, std::shared_ptr<const Transformer> latest, int64_t version) {
      // The newest published snapshot if there is one (immutable; forward() only reads it).
      auto weights = latest ? std::const_pointer_cast<Transformer>(latest) : routes[r].draft;
      return spawn_drafter(*sys_ptr, weights, drafter_options(o, beside, -1, version));
    };
  }
  return vo;
}

// Online distillation: a buffer per route behind a relay, so the supervisor can replace one that
// dies while the verifier and the distiller keep their handles. Each route gets an equal share of
// the buffer budget.
void spawn_buffers(Runtime::Impl& impl, const RuntimeOptions& o, std::vector<SupervisedWorker>& workers) {
  auto& sys = *impl.sys;
  const size_t share = static_cast<size_t>(o.online.buffer_bytes) / o.routes.size();
  for (size_t r = 0; r < o.routes.size(); ++r) {
    BufferOptions bo;
    bo.budget_bytes = std::max<size_t>(1024, share);
    bo.heldout_every = o.online.heldout_every;
    bo.heldout_max = static_cast<size_t>(o.online.heldout_records);
    bo.replay_requests = o.online.replay_requests;
    bo.device = o.target->device();
    bo.multiprocessors = static_cast<int>(o.online.distiller_multiprocessors);
    if (!o.online.state_dir.empty()) bo.state_dir = route_state_dir(o, r);
    auto first = bo;
    if (r == 0) first.fail_on_records = o.inject_buffer_failure;
    caf::actor_system* sys_ptr = impl.sys.get();
    SupervisedWorker w;
    w.name = "buffer:" + o.routes[r].name;
    w.current = spawn_buffer(sys, first);
    w.relay = spawn_relay(sys, w.current);
    w.respawn = [sys_ptr, bo] { return spawn_buffer(*sys_ptr, bo); };  // restores the held-out slice
    impl.buffers.push_back(w.relay);
    workers.push_back(std::move(w));
  }
}

DistillerOptions distiller_options(const RuntimeOptions& o, size_t r) {
  DistillerOptions dopt;
  const auto& on = o.online;
  dopt.train = DistillOptions{*parse_distill_loss(on.loss),
                              on.jsd_beta,
                              on.lr,
                              on.weight_decay,
                              on.warmup_steps,
                              on.clip,
                              on.batch,
                              on.steps_per_update,
                              on.guard_margin,
                              on.rollback_margin,
                              on.min_heldout,
                              on.inject_nan,
                              on.autocast};
  dopt.train.guard_z = on.guard_z;
  dopt.train.sequential_guard = on.sequential_guard;
  dopt.train.sequential.alpha = on.guard_alpha;
  dopt.min_new_records = on.min_new_records;
  dopt.route = static_cast<int64_t>(r);
  if (!on.state_dir.empty()) dopt.state_dir = route_state_dir(o, r);
  dopt.save_every = std::max<int64_t>(1, on.save_every);
  dopt.max_updates = on.max_updates;
  dopt.shadow = on.shadow;
  dopt.update_every_ms = on.update_every_ms;
  dopt.trace = o.trace;
  dopt.max_duty = on.max_duty;
  dopt.multiprocessors = static_cast<int>(on.distiller_multiprocessors);
  dopt.held_backoff = on.held_backoff;
  dopt.backoff_duty = on.backoff_duty;
  return dopt;
}

// A distiller per route behind a relay, starting from the configured draft (it resumes from its
// saved state when there is one); restarted by the supervisor only where it can rebuild its state.
void spawn_distillers(Runtime::Impl& impl, const RuntimeOptions& o,
                      const std::vector<std::shared_ptr<Transformer>>& configured,
                      std::vector<SupervisedWorker>& workers) {
  auto& sys = *impl.sys;
  for (size_t r = 0; r < o.routes.size(); ++r) {
    const auto dopt = distiller_options(o, r);
    auto first = dopt;
    if (r == 0) first.fail_on_update = o.inject_distiller_failure;
    caf::actor_system* sys_ptr = impl.sys.get();
    SupervisedWorker w;
    w.name = "distiller:" + o.routes[r].name;
    w.current = spawn_distiller(sys, configured[r], first, impl.buffers[r], impl.verifier, impl.metrics);
    w.relay = spawn_relay(sys, w.current);
    if (!o.online.state_dir.empty()) {
      w.respawn = [sys_ptr, draft = configured[r], dopt, buffer = impl.buffers[r], verifier = impl.verifier,
                   metrics = impl.metrics] { return spawn_distiller(*sys_ptr, draft, dopt, buffer, verifier, metrics); };
    } else {
      w.why_not = "no online.state_dir to rebuild it from";
    }
    impl.distillers.push_back(w.relay);
    // A restarted buffer has lost the distiller's waiting request: the distiller asks again.
    workers[r].after_restart = [relay = w.relay] { caf::anon_send(relay, sample_atom_v); };
    workers.push_back(std::move(w));
  }
}

// The verifier sets up (its cache, its attention plans, on the CPU its cost calibration) before
// it reads its mailbox: serving starts once it answers, so no request waits behind that (and the
// calibration is not timed beside a distiller's warm-up).
void wait_for_verifier(Runtime::Impl& impl) {
  caf::scoped_actor self{*impl.sys};
  self->request(impl.verifier, std::chrono::minutes(5), stats_atom_v)
      .receive([](const std::string&) {},
               [&](const caf::error& e) { log::warn(log::cat("the verifier did not report ready: ", caf::to_string(e))); });
}

// On a GPU each distiller warms up as it starts (OnlineDistiller::warm_up); a request returns
// once it has (at once elsewhere), so serving does not begin beside that first, slowest step.
void wait_for_distillers(Runtime::Impl& impl) {
  caf::scoped_actor self{*impl.sys};
  for (const auto& d : impl.distillers)
    self->request(d, std::chrono::minutes(2), stats_atom_v)
        .receive(
            [](const std::string& stats) {
              auto j = nlohmann::json::parse(stats, nullptr, false);
              if (j.is_object() && j.contains("error"))  // logged by the distiller too
                log::error(log::cat("online learning is off for a route: ", j["error"].get<std::string>()));
            },
            [&](const caf::error& e) { log::warn(log::cat("a distiller did not report ready: ", caf::to_string(e))); });
}

// The router and the user stages, spawned back to front so each knows its next hop:
// intake -> s0 -> ... -> router. Returns the error, "" on success.
std::string wire_pipeline(Runtime::Impl& impl, const RuntimeOptions& o) {
  auto& sys = *impl.sys;
  impl.router = spawn_router(sys, impl.verifier, RouterOptions{impl.route_names, o.router_eval_every, o.router_eval_warmup});
  if (impl.route_names.size() > 1) caf::anon_send(impl.verifier, route_atom_v, impl.router);
  caf::actor next = impl.router;
  for (auto it = o.stages.rbegin(); it != o.stages.rend(); ++it) {
    next = (*it)(sys, next);
    if (!next) return "a pipeline stage factory returned no actor";
    impl.stages.push_back(next);
  }
  caf::anon_send(impl.intake, route_atom_v, next);
  caf::anon_send(impl.intake, cancel_atom_v, impl.verifier);
  return "";
}

// Supervision: every actor above is watched (runtime/supervisor.hpp).
void supervise(Runtime::Impl& impl, const RuntimeOptions& o, std::vector<SupervisedWorker> workers) {
  SupervisorOptions so;
  so.board = impl.board;
  so.bridge = impl.bridge;
  so.essential = {{"verifier", impl.verifier}, {"intake", impl.intake}, {"router", impl.router},
                  {"metrics", impl.metrics}, {"client_bridge", impl.bridge}};
  for (size_t i = 0; i < impl.stages.size(); ++i) so.essential.emplace_back("stage:" + std::to_string(i), impl.stages[i]);
  so.workers = std::move(workers);
  so.max_restarts = o.max_restarts;
  impl.supervisor = spawn_supervisor(*impl.sys, std::move(so));
}

}  // namespace

std::unique_ptr<Runtime> Runtime::create(RuntimeOptions o, std::string* error) {
  auto fail = [&](const std::string& msg) -> std::unique_ptr<Runtime> {
    if (error) *error = msg;
    return nullptr;
  };
  if (auto why = check_options(o); !why.empty()) return fail(why);
  std::vector<int64_t> versions(o.routes.size(), 0);
  std::vector<std::shared_ptr<Transformer>> configured;  // the drafts before any restore
  for (const auto& route : o.routes) configured.push_back(route.draft);
  if (auto why = restore_saved_drafts(o, versions); !why.empty()) return fail(why);

  auto impl = std::make_unique<Impl>();
  impl->opt = o;
  impl->cfg = std::make_unique<caf::actor_system_config>();
  const int threads = o.threads > 0 ? o.threads : std::max(2u, std::thread::hardware_concurrency());
  impl->cfg->set("scheduler.max-threads", threads);
  impl->cfg->set("scheduler.policy", caf::atom_from_string(o.scheduler));
  impl->sys = std::make_unique<caf::actor_system>(*impl->cfg);
  // Serving beside the distillers' share of the GPU (OnlineOptions::serve_beside_distillers).
  const int beside = o.online.enabled && o.online.serve_beside_distillers
                         ? static_cast<int>(o.online.distiller_multiprocessors)
                         : 0;
  spawn_front(*impl, o, versions, beside);
  std::vector<SupervisedWorker> workers;
  if (o.online.enabled) spawn_buffers(*impl, o, workers);
  impl->verifier = spawn_verifier(*impl->sys, o.target, impl->drafters, impl->intake, impl->metrics,
                                  impl->buffers, verifier_options(*impl, o, versions, beside));
  wait_for_verifier(*impl);
  if (o.online.enabled) {
    spawn_distillers(*impl, o, configured, workers);
    wait_for_distillers(*impl);
  }
  if (auto why = wire_pipeline(*impl, o); !why.empty()) return fail(why);
  supervise(*impl, o, std::move(workers));
  return std::unique_ptr<Runtime>(new Runtime(std::move(impl)));
}

}  // namespace osd
