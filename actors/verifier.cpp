// The verifier actor: its handlers. Its state and steps: actors/verifier_state.{hpp,cpp} (admission,
// cancels, answers, stats) and actors/verifier_rounds.cpp (plan -> propose -> verify).
#include "actors/verifier.hpp"

#include "actors/verifier_state.hpp"
#include "models/common/log.hpp"

namespace osd {

namespace {

// The routes, their drafters (monitored and linked: they end with the verifier), the scheduler.
void set_up(VerifierActor* self, std::shared_ptr<Transformer> target, std::vector<caf::actor> drafters,
            std::vector<caf::actor> buffers, const VerifierOptions& opt) {
  auto& st = self->state;
  st.target = target;
  st.opt = opt;
  st.stream = std::make_unique<ActorStream>(target->device(), ActorStream::Priority::serving,
                                            opt.beside_multiprocessors, ActorStream::Side::rest);
  if (opt.beside_multiprocessors > 0 && st.stream->on_gpu()) {
    if (st.stream->multiprocessors() > 0)
      log::info(log::cat("verifier and drafters: serve on ", st.stream->multiprocessors(),
                         " multiprocessors, beside the distillers' ", opt.beside_multiprocessors));
    else
      log::warn(log::cat("verifier and drafters: cannot serve beside the distillers (",
                         st.stream->partition_error(), "); they use the whole GPU"));
  }
  st.timeline = std::make_unique<GpuTimeline>(opt.trace ? target->device() : c10::Device(c10::kCPU),
                                              "verifier");
  st.stream->run_on([&] {
    st.scorer = std::make_unique<TargetScorer>(target, opt.num_slots, opt.max_len);
    if (opt.warm_attention_plans && target->device().is_cuda()) st.scorer->warm_attention_plans();
  });
  st.speculative = !drafters.empty();
  for (size_t r = 0; r < std::max<size_t>(drafters.size(), 1); ++r) {
    VerifierRoute route;
    route.name = r < opt.route_names.size() ? opt.route_names[r] : "route-" + std::to_string(r);
    route.version = r < opt.draft_versions.size() ? opt.draft_versions[r] : 0;
    if (r < drafters.size()) {
      route.drafter = drafters[r];
      self->monitor(route.drafter);
      self->link_to(route.drafter);
      st.drafters.insert(route.drafter.address());
    }
    if (r < buffers.size()) route.buffer = buffers[r];
    st.routes.push_back(std::move(route));
  }
  auto sched = opt.scheduler;
  // Drafting overlaps verification only where they do not share the CPU's cores.
  bool all_on_cpu = !target->device().is_cuda();
  sched.overlap = sched.overlap && !all_on_cpu;
  st.scheduler = std::make_unique<RoundScheduler>(sched, static_cast<int64_t>(st.routes.size()));
  // On the CPU the target's passes are timed at every batch bucket before serving (a fraction of a
  // second for small models), so the planner's first prices are measured, not guessed; on a GPU
  // the first rounds at each shape measure them (and capture their CUDA graphs).
  if (st.speculative && !target->device().is_cuda())
    for (const auto& t : st.scorer->calibrate(opt.scheduler.k_max, 2000.0))
      st.scheduler->observe_verify(t.batch, t.k, t.ms);
}

caf::behavior verifier(VerifierActor* self, std::shared_ptr<Transformer> target,
                       std::vector<caf::actor> drafters, caf::actor intake, caf::actor metrics,
                       std::vector<caf::actor> buffers, VerifierOptions opt) {
  set_up(self, std::move(target), std::move(drafters), std::move(buffers), opt);
  self->state.intake = intake;
  self->state.metrics = metrics;
  // A drafter's death is handled by the down handler; any other exit ends the verifier.
  self->set_exit_handler([=](caf::exit_msg& m) {
    if (!self->state.drafters.count(m.source)) self->quit(m.reason);
  });
  self->set_down_handler([=](caf::down_msg& dm) {
    auto& st = self->state;
    if (!st.opt.drafter_factory) return;
    for (size_t r = 0; r < st.routes.size(); ++r)
      if (dm.source == st.routes[r].drafter.address()) restart_drafter(self, static_cast<int64_t>(r));
  });
  return {
      [=](admit_atom, Submission& sub, caf::actor& sink) {
        if (self->state.early_cancels.erase(sub.id)) {
          answer(self, sink, DoneEvent{sub.id, {}, "", "cancelled", "", "", {}, 0, 0});
          return;
        }
        self->state.waiting.emplace_back(std::move(sub), std::move(sink));
        pump(self);
      },
      [=](cancel_atom, const RequestId& id) {
        cancel_request(self, id);
        pump(self);
      },
      [=](round_atom, int64_t route) {
        run_round(self, route);
        pump(self);
      },
      [=](tick_atom) {  // more prompt tokens to prefill
        self->state.tick_queued = false;
        pump(self);
      },
      [=](swap_atom, WeightsSnapshot& snap) {
        auto& st = self->state;
        if (!st.speculative || snap.route < 0 || snap.route >= static_cast<int64_t>(st.routes.size())) return;
        auto& route = st.routes[snap.route];
        if (!snap.model || snap.version <= route.version) return;
        route.version = snap.version;
        route.latest = snap.model;
        st.scheduler->new_version(snap.route, snap.heldout_acceptance);
        self->send(route.drafter, swap_atom_v, std::move(snap));
      },
      [=](route_atom, caf::actor router) { self->state.router = std::move(router); },
      [=](trace_atom) -> std::string {
        auto events = self->state.trace;
        for (auto& e : nlohmann::json::parse(self->state.timeline->chrome_events()))
          events.push_back(std::move(e));
        return nlohmann::json{{"traceEvents", events}}.dump();
      },
      [=](stats_atom) -> std::string { return verifier_stats(self); },
  };
}

}  // namespace

caf::actor spawn_verifier(caf::actor_system& sys, std::shared_ptr<Transformer> target,
                          std::vector<caf::actor> drafters, caf::actor intake, caf::actor metrics,
                          std::vector<caf::actor> buffers, VerifierOptions opt) {
  return sys.spawn<caf::detached>(verifier, std::move(target), std::move(drafters), std::move(intake),
                                  std::move(metrics), std::move(buffers), std::move(opt));
}

}  // namespace osd
