#include "runtime/runtime.hpp"
#include "runtime/runtime_impl.hpp"

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

}  // namespace

RequestHandle::RequestHandle(std::string id, std::shared_future<GenerateResult> done, Runtime* rt)
    : id_(std::move(id)), done_(std::move(done)), runtime_(rt) {}

GenerateResult RequestHandle::get() { return done_.get(); }

bool RequestHandle::wait_for(std::chrono::milliseconds t) {
  return done_.wait_for(t) == std::future_status::ready;
}

void RequestHandle::cancel() { runtime_->cancel(id_); }

Runtime::Runtime(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}


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
