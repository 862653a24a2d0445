#include "actors/distiller.hpp"

#include <algorithm>
#include <chrono>

#include <nlohmann/json.hpp>

#include "actors/messages.hpp"

#include "models/core/device_stream.hpp"
#include "models/common/log.hpp"

namespace osd {

namespace {

struct DistillerState {
  std::unique_ptr<ActorStream> stream;  // first: destroyed after the tensors made on it
  std::unique_ptr<OnlineDistiller> core;
  std::unique_ptr<GpuTimeline> timeline;  // GPU spans of its updates (opt.trace)
  c10::Device serve_device = c10::Device(c10::kCPU);
  c10::ScalarType serve_dtype = c10::kFloat;
  int64_t published = 0, rejected = 0, held = 0, discarded = 0, deferred = 0, updates = 0;
  int64_t held_promising = 0;         // held updates that gained at least a standard error
  double busy_ms = 0, paused_ms = 0;  // time in updates, and in pauses after them (duty)
  // Back-off: each rejection in a row doubles the wait for new records, and so do the first
  // held_doublings held updates in a row that did not gain (a draft that already fits its
  // traffic trains less; a held update that gained a standard error neither counts nor resets);
  // at most 16x. With backoff_duty the same factor divides the route's busy share.
  int64_t rejected_in_a_row = 0, held_in_a_row = 0, held_doublings = 2;
  // Deferred updates (the held-out slice too small to judge) do not back off: a new route's
  // first candidate should be trained by the time its slice fills, which under light traffic
  // takes a hundred requests or so (the slice is saved across restarts, so a restart does not
  // start it over).
  int64_t backoff() const {
    return int64_t{1} << std::min<int64_t>(
               4, rejected_in_a_row + std::min<int64_t>(held_doublings, held_in_a_row));
  }
  nlohmann::json trace = nlohmann::json::array();  // one slice per update (Chrome trace)
  UpdateReport last;
  // Why the distiller could not start (a corrupt saved state, a device error): it then trains
  // nothing, says so in its stats, and serving goes on with the route's current draft.
  std::string start_error;
  std::string restored_from, restore_warning;  // the saved state it resumed from
  int64_t sample_errors = 0;                   // batches the buffer did not deliver
  int64_t asks = 0;                            // sample requests sent (the newest is the live one)
  bool asking = false;                         // a sample request is outstanding
  static inline const char* name = "osd.distiller";
};

using Self = caf::stateful_actor<DistillerState>;

void save(Self* self, const DistillerOptions& opt) {
  try {
    self->state.core->save(opt.state_dir);
    log::info(log::cat("distiller route ", opt.route, ": saved version ",
                       self->state.core->version(), " to ", opt.state_dir));
  } catch (const std::exception& e) {
    log::error(log::cat("distiller route ", opt.route, ": cannot save to ", opt.state_dir, ": ",
                        e.what()));
  }
}

void next_update(Self* self, DistillerOptions opt, caf::actor buffer, caf::actor verifier,
                 caf::actor metrics) {
  const int64_t n = opt.train.batch * opt.train.steps_per_update;
  // A route whose updates keep failing the guard (a draft that already fits its traffic) waits
  // for more new data before trying again, so it does not spend the cores serving needs.
  const int64_t backoff = self->state.backoff();
  // Asked again every few seconds: a buffer that died with this request waiting never answers
  // it (its restarted successor answers the next one; the buffer keeps one request per route).
  const int64_t wait_ms = opt.update_every_ms * backoff;
  const int64_t ask = ++self->state.asks;  // answers to older asks are stale
  self->state.asking = true;
  self->request(buffer, std::chrono::milliseconds(wait_ms + 5000), sample_atom_v, n,
                opt.min_new_records * backoff, opt.route, wait_ms)
      .then(
      [=](DistillBatch& batch) {
        auto& st = self->state;
        if (ask != st.asks) return;
        st.asking = false;
        UpdateReport rep;
        std::shared_ptr<const Transformer> snapshot;
        const auto t0 = std::chrono::steady_clock::now();
        try {
          // On CUDA the update runs on a stream of its own, so it overlaps the verifier's and the
          // drafters' kernels; the snapshot is complete (stream synchronised) before it is sent.
          st.stream->run_on([&] {
            const size_t span = st.timeline->begin();
            rep = st.core->update(batch.train, batch.heldout);
            if (rep.published && !opt.shadow)
              snapshot = st.core->snapshot(st.serve_device, st.serve_dtype);
            st.timeline->end(
                span, "distill update",
                nlohmann::json{{"decision", rep.decision}, {"records", batch.train.size()}}.dump());
          });
          st.stream->synchronize();
        } catch (const std::exception& e) {
          rep.decision = std::string("failed: ") + e.what();
          rep.published = false;
        }
        const auto t1 = std::chrono::steady_clock::now();
        if (st.trace.size() < 100000)
          st.trace.push_back(
              {{"name", "distill update"},
               {"ph", "X"},
               {"pid", 1},
               {"tid", "distiller"},
               {"ts", std::chrono::duration<double, std::micro>(t0.time_since_epoch()).count()},
               {"dur", std::chrono::duration<double, std::micro>(t1 - t0).count()},
               {"args", {{"decision", rep.decision}, {"version", rep.version}}}});
        ++st.updates;
        if (rep.published) {
          ++st.published;
          st.rejected_in_a_row = st.held_in_a_row = 0;
        } else if (rep.decision == "rejected by guard") {
          ++st.rejected;
          ++st.rejected_in_a_row;
        } else if (rep.decision == "held") {
          ++st.held;
          if (rep.promising)
            ++st.held_promising;  // gaining, not yet clear of the noise: no back-off
          else
            ++st.held_in_a_row;
        } else if (rep.decision.rfind("deferred", 0) == 0) {
          ++st.deferred;
        } else {
          ++st.discarded;
        }
        st.last = rep;
        log::info(log::cat("distiller route ", opt.route, ": ", rep.decision, " (version ",
                           rep.version, ", loss ", rep.loss, ", held-out acceptance ",
                           rep.acceptance_candidate, " vs ", rep.acceptance_current,
                           " (gain stderr ", rep.gain_stderr, "), ", rep.steps, " steps, ",
                           rep.discarded_steps, " discarded)"));
        if (metrics)
          self->send(metrics,
                     DistillMetrics{opt.route, rep.version, rep.published, rep.decision, rep.loss,
                                    rep.acceptance_candidate, rep.acceptance_current, rep.steps,
                                    rep.discarded_steps});
        if (rep.published && !opt.state_dir.empty() && st.published % opt.save_every == 0)
          save(self, opt);
        if (snapshot)
          self->send(verifier, swap_atom_v, WeightsSnapshot{rep.version, opt.route, snapshot, rep.acceptance_candidate});
        if (opt.max_updates > 0 && st.published >= opt.max_updates) {
          log::info(log::cat("distiller route ", opt.route, ": ", st.published,
                             " updates published, training stops (max_updates)"));
          return;
        }
        // A duty cap (and a backed-off route) leaves the device to serving for a while before the
        // next batch.
        const double update_ms = std::chrono::duration<double, std::milli>(t1 - t0).count();
        const double pause = distiller_pause_ms(
            update_ms, distiller_duty(opt.max_duty, st.backoff(), opt.backoff_duty));
        st.busy_ms += update_ms;
        st.paused_ms += pause;
        if (opt.fail_on_update > 0 && st.updates == opt.fail_on_update)
          throw std::runtime_error("injected distiller failure");
        if (pause > 0)
          self->delayed_send(self, std::chrono::microseconds(static_cast<int64_t>(pause * 1e3)),
                             tick_atom_v);
        else
          next_update(self, opt, buffer, verifier, metrics);
      },
      [=](caf::error& err) {
        if (ask != self->state.asks) return;
        self->state.asking = false;
        // Not enough new records yet (the request timed out): ask again at once. The buffer died
        // (its relay answers while the supervisor restarts it): ask again in a second.
        if (err == caf::sec::request_timeout) return next_update(self, opt, buffer, verifier, metrics);
        if (self->state.sample_errors++ == 0)
          log::warn(log::cat("distiller route ", opt.route, ": the buffer did not answer (",
                             self->system().render(err), "); asking again every second"));
        self->delayed_send(self, std::chrono::seconds(1), tick_atom_v);
      });
}

caf::behavior distiller(Self* self, std::shared_ptr<const Transformer> draft, DistillerOptions opt,
                        caf::actor buffer, caf::actor verifier, caf::actor metrics) {
  auto& st = self->state;
  st.serve_device = draft->device();
  st.held_doublings = std::clamp<int64_t>(opt.held_backoff, 0, 4);
  st.stream = std::make_unique<ActorStream>(st.serve_device, ActorStream::Priority::background,
                                            opt.multiprocessors);
  if (opt.multiprocessors > 0 && st.stream->on_gpu()) {
    if (st.stream->multiprocessors() > 0)
      log::info(log::cat("distiller route ", opt.route, ": trains on ",
                         st.stream->multiprocessors(), " multiprocessors of the GPU"));
    else
      log::warn(log::cat("distiller route ", opt.route, ": cannot train on ", opt.multiprocessors,
                         " multiprocessors (", st.stream->partition_error(),
                         "): it shares the whole GPU"));
  }
  // Trains where the draft runs; resumes from state_dir when it holds a saved state.
  try {
    st.stream->run_on([&] {
      const auto saved = opt.state_dir.empty() ? OnlineDistiller::SavedState{}
                                                : OnlineDistiller::find_saved(opt.state_dir);
      if (saved.version >= 0) {
        st.core = OnlineDistiller::restore(opt.state_dir, opt.train, draft->device());
        st.restored_from = saved.path;
        st.restore_warning = saved.warning;
        if (!saved.warning.empty())
          log::warn(log::cat("distiller route ", opt.route, ": ", saved.warning));
      } else
        st.core = std::make_unique<OnlineDistiller>(*draft, opt.train, draft->device());
      if (st.stream->on_gpu()) st.core->warm_up();  // before its first update meets serving
    });
  } catch (const std::exception& e) {
    st.core.reset();
    st.start_error = e.what();
    log::error(log::cat("distiller route ", opt.route,
                        ": cannot start, so this route's draft will not learn: ", e.what()));
  }
  st.timeline = std::make_unique<GpuTimeline>(opt.trace ? st.serve_device : c10::Device(c10::kCPU),
                                              "distiller");
  st.serve_dtype = draft->dtype();
  if (st.core) next_update(self, opt, buffer, verifier, metrics);
  return {
      [=](tick_atom) { next_update(self, opt, buffer, verifier, metrics); },
      // The buffer was restarted: a request the old one held is lost, so ask the new one now.
      [=](sample_atom) {
        if (self->state.asking) next_update(self, opt, buffer, verifier, metrics);
      },
      [=](trace_atom) -> std::string {
        auto events = self->state.trace;
        for (auto& e : nlohmann::json::parse(self->state.timeline->chrome_events()))
          events.push_back(std::move(e));
        return events.dump();
      },
      [=](save_atom) -> int64_t {
        if (!self->state.core) return -1;  // nothing trained, nothing to save
        if (!opt.state_dir.empty()) save(self, opt);
        return self->state.core->version();
      },
      [=](stats_atom) -> std::string {
        auto& s = self->state;
        if (!s.core) return nlohmann::json{{"error", s.start_error}, {"updates", 0}}.dump();
        return nlohmann::json{{"version", s.core->version()},
                              {"updates", s.updates},
                              {"published", s.published},
                              {"rejected_by_guard", s.rejected},
                              {"held", s.held},
                              {"held_promising", s.held_promising},
                              {"discarded", s.discarded},
                              {"deferred", s.deferred},
                              {"backoff", s.backoff()},
                              {"duty", distiller_duty(opt.max_duty, s.backoff(), opt.backoff_duty)},
                              {"busy_ms", s.busy_ms},
                              {"paused_ms", s.paused_ms},
                              {"steps", s.core->total_steps()},
                              {"last_decision", s.last.decision},
                              {"last_loss", s.last.loss},
                              {"last_heldout_acceptance", s.last.acceptance_candidate},
                              {"restored_from", s.restored_from},
                              {"restore_warning", s.restore_warning},
                              {"sample_errors", s.sample_errors}}
            .dump();
      },
  };
}

}  // namespace

double distiller_pause_ms(double update_ms, double max_duty) {
  if (!(max_duty < 1.0) || !(update_ms > 0)) return 0.0;
  return update_ms * (1.0 / std::max(max_duty, 1e-3) - 1.0);
}

double distiller_duty(double max_duty, int64_t backoff, bool backoff_duty) {
  if (!backoff_duty || backoff <= 1) return max_duty;
  return std::min(max_duty, 1.0 / static_cast<double>(backoff));
}

caf::actor spawn_distiller(caf::actor_system& sys, std::shared_ptr<const Transformer> draft,
                           DistillerOptions opt, caf::actor buffer, caf::actor verifier,
                           caf::actor metrics) {
  return sys.spawn<caf::detached>(distiller, std::move(draft), opt, std::move(buffer),
                                  std::move(verifier), std::move(metrics));
}

}  // namespace osd
