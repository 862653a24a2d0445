#include "runtime/runtime.hpp"

#include "models/text/stream_decoder.hpp"

#include <atomic>
#include <nlohmann/json.hpp>
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
#include "models/weights/hf_checkpoint.hpp"
#include "models/distillation/losses.hpp"
#include "models/distillation/online_distiller.hpp"
#include "models/core/transformer.hpp"
#include "models/common/log.hpp"
#include "runtime/supervisor.hpp"

#include <optional>

namespace osd {

struct Runtime::Impl {
  RuntimeOptions opt;
  std::unique_ptr<caf::actor_system_config> cfg;
  std::unique_ptr<caf::actor_system> sys;
  caf::actor metrics, intake, verifier, router, bridge, supervisor;
  std::vector<std::string> route_names;
  std::vector<caf::actor> drafters;
  // Per route (online only): relays to the route's buffer and distiller, which the supervisor
  // may replace (runtime/supervisor.hpp); everyone holds the relays.
  std::vector<caf::actor> buffers, distillers;
  std::vector<caf::actor> stages;
  std::shared_ptr<HealthBoard> board = std::make_shared<HealthBoard>();
  std::atomic<int64_t> next_id{1};
  // Calls submitted and not yet answered (shared: a call may be answered while the system stops).
  std::shared_ptr<std::atomic<int64_t>> in_flight = std::make_shared<std::atomic<int64_t>>(0);
  std::atomic<bool> stopped{false};
};

namespace {
GenerateResult to_result(const DoneEvent& d) {
  GenerateResult r;
  r.id = d.id;
  r.tokens = d.tokens;
  r.text = d.text;
  r.finish = d.finish;
  r.error_code = d.error_code;
  r.error_message = d.error_message;
  r.num_drafts = d.stats.num_drafts;
  r.num_draft_tokens = d.stats.num_draft_tokens;
  r.num_accepted_tokens = d.stats.num_accepted_tokens;
  r.accepted_per_position = d.stats.accepted_per_pos;
  r.ttft_ms = d.ttft_ms;
  r.total_ms = d.total_ms;
  r.route = d.route;
  return r;
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
}  // namespace

RequestHandle::RequestHandle(std::string id, std::shared_future<GenerateResult> done, Runtime* rt)
    : id_(std::move(id)), done_(std::move(done)), runtime_(rt) {}

GenerateResult RequestHandle::get() { return done_.get(); }

bool RequestHandle::wait_for(std::chrono::milliseconds t) {
  return done_.wait_for(t) == std::future_status::ready;
}

void RequestHandle::cancel() { runtime_->cancel(id_); }

Runtime::Runtime(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

std::unique_ptr<Runtime> Runtime::create(RuntimeOptions o, std::string* error) {
  auto fail = [&](const std::string& msg) -> std::unique_ptr<Runtime> {
    if (error) *error = msg;
    return nullptr;
  };
  if (!o.target) return fail("RuntimeOptions.target is required");
  if (o.routes.empty() && o.draft) o.routes.push_back(DraftRoute{"default", o.draft});
  for (size_t r = 0; r < o.routes.size(); ++r) {
    const auto& route = o.routes[r];
    if (route.name.empty()) return fail("route " + std::to_string(r) + " has no name");
    if (!route.draft) return fail("route '" + route.name + "' has no draft model");
    if (route.draft->config().vocab_size != o.target->config().vocab_size)
      return fail("draft and target vocabularies differ (route '" + route.name + "')");
    for (size_t q = 0; q < r; ++q)
      if (o.routes[q].name == route.name) return fail("two routes are named '" + route.name + "'");
  }
  const bool speculative = !o.routes.empty();
  if (o.max_batch < 1 || o.max_batch > 4096) return fail("max_batch must be in [1, 4096]");
  if (o.max_len < 2 || o.max_len > (1 << 20)) return fail("max_len must be in [2, 2^20]");
  if (o.k < 0 || o.k > 64 || o.k_max < 0 || o.k_max > 64) return fail("k and k_max must be in [0, 64]");
  if (o.groups < 1 || o.groups > 16) return fail("groups must be in [1, 16]");
  if (o.scheduler != "sharing" && o.scheduler != "stealing")
    return fail("scheduler must be sharing or stealing (got '" + o.scheduler + "')");
  if (o.max_in_flight < 1) return fail("max_in_flight must be >= 1");
  if (o.max_new_tokens_limit < 1) return fail("max_new_tokens_limit must be >= 1");
  if (o.max_id_bytes < 1) return fail("max_id_bytes must be >= 1");
  if (o.max_restarts < 0) return fail("max_restarts must be >= 0");
  if (o.router_eval_every < 0 || o.router_eval_warmup < 0) return fail("router_eval_every/warmup must be >= 0");
  std::optional<DistillLoss> loss = parse_distill_loss(o.online.loss);
  if (o.online.enabled) {
    if (!speculative) return fail("online distillation needs a draft model");
    if (!loss) return fail("online.loss must be fkl, rkl, jsd or tvd (got '" + o.online.loss + "')");
    if (!(o.online.lr > 0) || o.online.lr > 1e6) return fail("online.lr must be in (0, 1e6]");
    if (!(o.online.max_duty > 0) || o.online.max_duty > 1)
      return fail("online.max_duty must be in (0, 1]");
    if (o.online.batch < 1 || o.online.steps_per_update < 1 || o.online.min_new_records < 1)
      return fail("online.batch, steps_per_update and min_new_records must be >= 1");
    if (o.online.buffer_bytes < 1024) return fail("online.buffer_bytes must be >= 1024");
    if (o.online.update_every_ms < 0) return fail("online.update_every_ms must be >= 0");
    if (o.online.distiller_multiprocessors < 0 || o.online.distiller_multiprocessors > 4096)
      return fail("online.distiller_multiprocessors must be in [0, 4096] (0: the whole GPU)");
  }
  // A saved online-distillation state replaces a route's draft weights and sets its version: the
  // newest intact version (a torn or corrupt save falls back to the one before, with a warning).
  std::vector<int64_t> versions(o.routes.size(), 0);
  std::vector<std::shared_ptr<Transformer>> configured(o.routes.size());  // before any restore
  auto state_dir = [&](size_t r) { return o.online.state_dir + "/route-" + o.routes[r].name; };
  for (size_t r = 0; r < o.routes.size(); ++r) configured[r] = o.routes[r].draft;
  if (o.online.enabled && !o.online.state_dir.empty()) {
    for (size_t r = 0; r < o.routes.size(); ++r) {
      try {
        const auto saved = OnlineDistiller::find_saved(state_dir(r));
        if (saved.version >= 0) {
          if (!saved.warning.empty()) log::warn("route '" + o.routes[r].name + "': " + saved.warning);
          versions[r] = saved.version;
          auto& d = o.routes[r].draft;
          d = load_hf_checkpoint(saved.path, d->device(), d->config().dtype);
          log::info(log::cat("route '", o.routes[r].name, "': restored draft version ", saved.version, " from ",
                             saved.path));
        }
      } catch (const std::exception& e) {
        return fail("cannot restore the online draft of route '" + o.routes[r].name + "': " + e.what());
      }
    }
  }
  auto impl = std::make_unique<Impl>();
  impl->opt = o;
  impl->cfg = std::make_unique<caf::actor_system_config>();
  const int threads = o.threads > 0 ? o.threads : std::max(2u, std::thread::hardware_concurrency());
  impl->cfg->set("scheduler.max-threads", threads);
  impl->cfg->set("scheduler.policy", caf::atom_from_string(o.scheduler));
  impl->sys = std::make_unique<caf::actor_system>(*impl->cfg);
  auto& sys = *impl->sys;
  // The context a request must fit: the KV cache positions per sequence and every model's
  // max_position_embeddings (a draft proposes at the same positions as the target).
  int64_t context = std::min(o.max_len, o.target->config().max_position_embeddings);
  for (const auto& route : o.routes) context = std::min(context, route.draft->config().max_position_embeddings);
  if (o.max_new_tokens_limit >= context)
    log::warn(log::cat("max_new_tokens_limit (", o.max_new_tokens_limit, ") is not below the context (", context,
                       " tokens): requests are limited by prompt + max_new_tokens <= ", context));
  IntakeOptions io;
  io.max_in_flight = o.max_in_flight;
  io.max_new_tokens = o.max_new_tokens_limit;
  io.vocab_size = o.target->config().vocab_size;
  io.context = context;
  io.has_tokenizer = static_cast<bool>(o.token_text) || o.tokenizer != nullptr;
  impl->metrics = spawn_metrics(sys);
  impl->intake = spawn_intake(sys, io);
  impl->bridge = spawn_client_bridge(sys, impl->intake, BridgeOptions{static_cast<size_t>(o.max_id_bytes)});
  // Serving beside the distillers' share of the GPU (OnlineOptions::serve_beside_distillers).
  const int beside = o.online.enabled && o.online.serve_beside_distillers
                         ? static_cast<int>(o.online.distiller_multiprocessors)
                         : 0;
  for (size_t r = 0; r < o.routes.size(); ++r) {
    impl->route_names.push_back(o.routes[r].name);
    const int64_t fail_on = r == 0 ? o.inject_drafter_failure : -1;
    impl->drafters.push_back(
        spawn_drafter(sys, o.routes[r].draft, drafter_options(o, beside, fail_on, versions[r])));
  }
  caf::anon_send(impl->metrics, route_atom_v, impl->route_names, versions);  // metric labels
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
    distiller_beside_target =
        distiller_beside_target || route.draft->device() == o.target->device();
  vo.beside_multiprocessors = distiller_beside_target ? beside : 0;
  vo.trace = o.trace;
  vo.warm_attention_plans = o.warm_attention_plans;
  vo.record_all_positions = o.online.record_all_positions;
  vo.record_prompt_positions = o.online.enabled ? o.online.record_prompt_positions : 0;
  vo.record_top_k = o.online.record_top_k;
  vo.record_plain_every = o.online.enabled ? o.online.record_plain_every : 0;
  vo.route_names = impl->route_names;
  vo.draft_versions = versions;
  // Online distillation: a buffer and a distiller per route, each behind a relay, so the
  // supervisor can replace one that dies while the verifier and the distiller keep their handles.
  std::vector<SupervisedWorker> workers;
  if (o.online.enabled) {
    // Each route gets an equal share of the buffer budget.
    const size_t share = static_cast<size_t>(o.online.buffer_bytes) / o.routes.size();
    for (size_t r = 0; r < o.routes.size(); ++r) {
      BufferOptions bo;
      bo.budget_bytes = std::max<size_t>(1024, share);
      bo.heldout_every = o.online.heldout_every;
      bo.heldout_max = static_cast<size_t>(o.online.heldout_records);
      bo.replay_requests = o.online.replay_requests;
      bo.device = o.target->device();
      bo.multiprocessors = static_cast<int>(o.online.distiller_multiprocessors);
      if (!o.online.state_dir.empty()) bo.state_dir = state_dir(r);
      auto first = bo;
      if (r == 0) first.fail_on_records = o.inject_buffer_failure;
      caf::actor_system* sys_ptr = impl->sys.get();
      SupervisedWorker w;
      w.name = "buffer:" + o.routes[r].name;
      w.current = spawn_buffer(sys, first);
      w.relay = spawn_relay(sys, w.current);
      w.respawn = [sys_ptr, bo] { return spawn_buffer(*sys_ptr, bo); };  // restores the held-out slice
      impl->buffers.push_back(w.relay);
      workers.push_back(std::move(w));
    }
  }
  if (speculative) {
    caf::actor_system* sys_ptr = impl->sys.get();
    auto routes = o.routes;
    vo.drafter_factory = [sys_ptr, routes, o, beside](int64_t r,
                                                      std::shared_ptr<const Transformer> latest,
                                                      int64_t version) {
      // The newest published snapshot if there is one (immutable; forward() only reads it).
      auto weights = latest ? std::const_pointer_cast<Transformer>(latest) : routes[r].draft;
      return spawn_drafter(*sys_ptr, weights, drafter_options(o, beside, -1, version));
    };
  }
  impl->verifier = spawn_verifier(sys, o.target, impl->drafters, impl->intake, impl->metrics, impl->buffers, vo);
  // The verifier sets up (its cache, its attention plans, on the CPU its cost calibration) before
  // it reads its mailbox: serving starts once it answers, so no request waits behind that.
  {
    caf::scoped_actor self{sys};
    self->request(impl->verifier, std::chrono::minutes(5), stats_atom_v)
        .receive([](const std::string&) {},
                 [&](const caf::error& e) { log::warn(log::cat("the verifier did not report ready: ", caf::to_string(e))); });
  }
  if (o.online.enabled) {
    for (size_t r = 0; r < o.routes.size(); ++r) {
      DistillerOptions dopt;
      const auto& on = o.online;
      dopt.train = DistillOptions{*loss,           on.jsd_beta,
                                  on.lr,           on.weight_decay,
                                  on.warmup_steps, on.clip,
                                  on.batch,        on.steps_per_update,
                                  on.guard_margin, on.rollback_margin,
                                  on.min_heldout,  on.inject_nan,
                                  on.autocast};
      dopt.train.guard_z = on.guard_z;
      dopt.train.sequential_guard = on.sequential_guard;
      dopt.train.sequential.alpha = on.guard_alpha;
      dopt.min_new_records = on.min_new_records;
      dopt.route = static_cast<int64_t>(r);
      if (!on.state_dir.empty()) dopt.state_dir = state_dir(r);
      dopt.save_every = std::max<int64_t>(1, on.save_every);
      dopt.max_updates = on.max_updates;
      dopt.shadow = on.shadow;
      dopt.update_every_ms = on.update_every_ms;
      dopt.trace = o.trace;
      dopt.max_duty = on.max_duty;
      dopt.multiprocessors = static_cast<int>(on.distiller_multiprocessors);
      dopt.held_backoff = on.held_backoff;
      dopt.backoff_duty = on.backoff_duty;
      auto first = dopt;
      if (r == 0) first.fail_on_update = o.inject_distiller_failure;
      caf::actor_system* sys_ptr = impl->sys.get();
      SupervisedWorker w;
      w.name = "distiller:" + o.routes[r].name;
      // The configured draft: a distiller resumes from its saved state when there is one.
      w.current = spawn_distiller(sys, configured[r], first, impl->buffers[r], impl->verifier, impl->metrics);
      w.relay = spawn_relay(sys, w.current);
      if (!on.state_dir.empty()) {
        w.respawn = [sys_ptr, draft = configured[r], dopt, buffer = impl->buffers[r],
                     verifier = impl->verifier, metrics = impl->metrics] {
          return spawn_distiller(*sys_ptr, draft, dopt, buffer, verifier, metrics);
        };
      } else {
        w.why_not = "no online.state_dir to rebuild it from";
      }
      impl->distillers.push_back(w.relay);
      // A restarted buffer has lost the distiller's waiting request: the distiller asks again.
      workers[r].after_restart = [relay = w.relay] { caf::anon_send(relay, sample_atom_v); };
      workers.push_back(std::move(w));
    }
    // On a GPU each distiller warms up as it starts (OnlineDistiller::warm_up); a request returns
    // once it has (at once elsewhere), so serving does not begin beside that first, slowest step.
    {
      caf::scoped_actor self{sys};
      for (const auto& d : impl->distillers)
        self->request(d, std::chrono::minutes(2), stats_atom_v)
            .receive(
                [](const std::string& stats) {
                  auto j = nlohmann::json::parse(stats, nullptr, false);
                  if (j.is_object() && j.contains("error"))  // logged by the distiller too
                    log::error(log::cat("online learning is off for a route: ",
                                        j["error"].get<std::string>()));
                },
                [&](const caf::error& e) {
                  log::warn(log::cat("a distiller did not report ready: ", caf::to_string(e)));
                });
    }
  }
  impl->router = spawn_router(sys, impl->verifier,
                              RouterOptions{impl->route_names, o.router_eval_every, o.router_eval_warmup});
  if (impl->route_names.size() > 1) caf::anon_send(impl->verifier, route_atom_v, impl->router);
  // User stages, spawned back to front so each knows its next hop: intake -> s0 -> ... -> router.
  caf::actor next = impl->router;
  for (auto it = o.stages.rbegin(); it != o.stages.rend(); ++it) {
    next = (*it)(sys, next);
    if (!next) return fail("a pipeline stage factory returned no actor");
    impl->stages.push_back(next);
  }
  caf::anon_send(impl->intake, route_atom_v, next);
  caf::anon_send(impl->intake, cancel_atom_v, impl->verifier);
  // Supervision: every actor above is watched (runtime/supervisor.hpp).
  SupervisorOptions so;
  so.board = impl->board;
  so.bridge = impl->bridge;
  so.essential = {{"verifier", impl->verifier}, {"intake", impl->intake}, {"router", impl->router},
                  {"metrics", impl->metrics}, {"client_bridge", impl->bridge}};
  for (size_t i = 0; i < impl->stages.size(); ++i)
    so.essential.emplace_back("stage:" + std::to_string(i), impl->stages[i]);
  so.workers = std::move(workers);
  so.max_restarts = o.max_restarts;
  impl->supervisor = spawn_supervisor(sys, std::move(so));
  return std::unique_ptr<Runtime>(new Runtime(std::move(impl)));
}

Runtime::~Runtime() { shutdown(true); }

std::shared_ptr<RequestHandle> Runtime::submit(GenerateParams p, std::function<void(const TokenChunk&)> on_tokens,
                                               std::function<void(const GenerateResult&)> on_done) {
  Submission sub;
  sub.id = p.id.empty() ? "api-" + std::to_string(impl_->next_id++) : p.id;
  sub.request.prompt = std::move(p.prompt_tokens);
  sub.request.max_new_tokens = p.max_new_tokens;
  sub.request.sampling = SamplingParams{p.temperature, p.top_k, p.top_p, p.seed};
  const auto sampling = p.sampling == SpecSampling::server_default ? impl_->opt.sampling : p.sampling;
  sub.request.sampling.mode =
      sampling == SpecSampling::coupled ? SamplingMode::coupled : SamplingMode::rejection;
  sub.request.eos_ids = std::move(p.eos_ids);
  sub.request.stop = std::move(p.stop);
  sub.domain = std::move(p.domain);
  sub.stream = p.stream;
  sub.submitted_us = std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now().time_since_epoch()).count();
  auto call = std::make_shared<ClientCall>();
  if (on_tokens)
    call->on_tokens = [cb = std::move(on_tokens)](const TokenEvent& ev) { cb(TokenChunk{ev.id, ev.tokens, ev.text}); };
  auto promise = std::make_shared<std::promise<GenerateResult>>();
  ++*impl_->in_flight;
  call->on_done = [promise, cb = std::move(on_done), in_flight = impl_->in_flight](DoneEvent&& d) {
    --*in_flight;
    auto r = to_result(d);
    if (cb) cb(r);
    promise->set_value(std::move(r));
  };
  std::shared_future<GenerateResult> fut = promise->get_future().share();
  auto handle = std::shared_ptr<RequestHandle>(new RequestHandle(sub.id, fut, this));
  if (impl_->stopped) {
    call->client_id = sub.id;
    call->finish(DoneEvent{sub.id, {}, "", "error", "shutting_down", "the runtime has shut down", {}, 0, 0});
    return handle;
  }
  caf::anon_send(impl_->bridge, submit_atom_v, std::move(sub), std::move(call));
  return handle;
}

// Through the bridge, which knows the calls in flight, and the intake, which knows whether the
// request was admitted: a cancel reaches the verifier only for a request it has or will have.
void Runtime::cancel(const std::string& id) {
  if (!impl_->stopped) caf::anon_send(impl_->bridge, cancel_atom_v, id);
}

RuntimeHealth Runtime::health() const {
  auto h = impl_->board->snapshot();
  h.in_flight = *impl_->in_flight;
  return h;
}

std::string Runtime::health_json() const {
  const auto h = health();
  nlohmann::json actors = nlohmann::json::array();
  for (const auto& a : h.actors)
    actors.push_back({{"name", a.name}, {"alive", a.alive}, {"restarts", a.restarts}, {"last_failure", a.last_failure}});
  return nlohmann::json{{"status", health_status_name(h.status)},
                        {"reason", h.reason},
                        {"actors", actors},
                        {"in_flight", h.in_flight}}
      .dump();
}

bool Runtime::inject_failure(const std::string& actor) {
  if (impl_->stopped) return false;
  bool found = false;
  caf::scoped_actor self{*impl_->sys};
  self->request(impl_->supervisor, std::chrono::seconds(10), fail_atom_v, actor)
      .receive([&](bool f) { found = f; }, [&](caf::error&) {});
  return found;
}

int64_t Runtime::drain(std::chrono::milliseconds deadline) {
  if (impl_->stopped) return 0;
  impl_->board->set_draining();
  int64_t left = -1;
  caf::scoped_actor self{*impl_->sys};
  // Intake closes behind every submission the bridge has forwarded; then the calls run out.
  self->request(impl_->bridge, std::chrono::seconds(10), close_atom_v).receive([](int64_t) {}, [](caf::error&) {});
  self->request(impl_->bridge, deadline, drain_atom_v).receive([&](int64_t) { left = 0; }, [](caf::error&) {});
  if (left == 0) return 0;
  self->request(impl_->bridge, std::chrono::seconds(10), stats_atom_v)
      .receive([&](int64_t n) { left = n; }, [&](caf::error&) { left = 0; });
  return left;
}

std::string Runtime::stats_json() {
  if (impl_->stopped) return "{}";
  caf::scoped_actor self{*impl_->sys};
  nlohmann::json out = nlohmann::json::object();
  auto ask_value = [&](const caf::actor& a) {
    nlohmann::json v = nullptr;
    self->request(a, std::chrono::seconds(10), stats_atom_v)
        .receive([&](const std::string& s) { v = nlohmann::json::parse(s); }, [&](caf::error&) {});
    return v;
  };
  out["metrics"] = ask_value(impl_->metrics);
  out["intake"] = ask_value(impl_->intake);
  out["verifier"] = ask_value(impl_->verifier);
  out["router"] = ask_value(impl_->router);
  nlohmann::json routes = nlohmann::json::array();
  for (size_t r = 0; r < impl_->route_names.size(); ++r) {
    nlohmann::json route = {{"name", impl_->route_names[r]}};
    if (r < impl_->buffers.size()) route["buffer"] = ask_value(impl_->buffers[r]);
    if (r < impl_->distillers.size()) route["distiller"] = ask_value(impl_->distillers[r]);
    routes.push_back(route);
  }
  out["routes"] = routes;
  out["health"] = nlohmann::json::parse(health_json());
  // The first route's buffer and distiller also at the top level (single-route deployments).
  if (!impl_->buffers.empty()) out["buffer"] = routes[0]["buffer"];
  if (!impl_->distillers.empty()) out["distiller"] = routes[0]["distiller"];
  return out.dump();
}

std::string Runtime::trace_json() {
  if (impl_->stopped) return "{\"traceEvents\":[]}";
  caf::scoped_actor self{*impl_->sys};
  std::string out = "{\"traceEvents\":[]}";
  self->request(impl_->verifier, std::chrono::seconds(10), trace_atom_v)
      .receive([&](const std::string& s) { out = s; }, [&](caf::error&) {});
  // The distillers' updates and the drafters' GPU spans on tracks of their own (route names
  // after the first route's). Drafters restarted after a failure are not asked.
  auto merged = nlohmann::json::parse(out);
  for (const auto* actors : {&impl_->distillers, &impl_->drafters})
    for (size_t r = 0; r < actors->size(); ++r)
      self->request((*actors)[r], std::chrono::seconds(10), trace_atom_v)
          .receive(
              [&](const std::string& s) {
                for (auto& e : nlohmann::json::parse(s)) {
                  if (r > 0) e["tid"] = e["tid"].get<std::string>() + " " + impl_->route_names[r];
                  merged["traceEvents"].push_back(e);
                }
              },
              [&](caf::error&) {});
  return merged.dump();
}

void Runtime::shutdown(bool finish_in_flight) {
  if (impl_->stopped.exchange(true)) return;
  impl_->board->set_draining();
  {
    caf::scoped_actor self{*impl_->sys};
    auto done = [](int64_t) {};
    auto failed = [](caf::error&) {};
    // Deaths from here on are the shutdown's own.
    self->request(impl_->supervisor, std::chrono::seconds(10), close_atom_v).receive([](bool) {}, failed);
    self->request(impl_->bridge, std::chrono::seconds(10), close_atom_v).receive(done, failed);
    if (!finish_in_flight) self->send(impl_->verifier, cancel_atom_v, std::string("*"));
    // Every call answered (a failed runtime has answered them already).
    self->request(impl_->bridge, caf::infinite, drain_atom_v).receive(done, failed);
    // Then persist what was learned, after the last request (a drain's requests trained it too).
    for (auto& d : impl_->distillers)
      self->request(d, std::chrono::seconds(60), save_atom_v).receive(done, failed);
    for (auto& b : impl_->buffers)  // and the held-out slices the guards judge by
      self->request(b, std::chrono::seconds(60), save_atom_v).receive(done, failed);
    // The supervisor stops the buffers and distillers it runs, and their relays.
    for (auto* a : {&impl_->supervisor, &impl_->bridge, &impl_->router, &impl_->verifier, &impl_->intake,
                    &impl_->metrics})
      if (*a) self->send_exit(*a, caf::exit_reason::user_shutdown);
    for (auto& a : impl_->drafters) self->send_exit(a, caf::exit_reason::user_shutdown);
    for (auto& a : impl_->stages) self->send_exit(a, caf::exit_reason::user_shutdown);
  }
  impl_->sys->await_all_actors_done();
}

}  // namespace osd
