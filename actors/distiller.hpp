#pragma once
// distiller: owns a trainable copy of one draft (models/distillation/online_distiller.hpp) and trains it on
// the buffer's records while serving goes on, on its own thread. Each update asks the buffer for
// a batch (answered once enough records are new), takes a few AdamW steps, guards the candidate
// on the held-out slice, and publishes an accepted update as an immutable, versioned
// WeightsSnapshot to the verifier (which hands it to the drafter). Every decision goes to the
// log and to the metrics actor. When the buffer does not answer (it died and is being
// restarted), the distiller asks again a second later.
//   (stats_atom) -> std::string   JSON: version, updates published / rejected / discarded; or
//                                 {"error": why, "updates": 0} when it could not start
//   (trace_atom) -> std::string   JSON array of Chrome trace slices, one per update
//   (save_atom) -> int64_t        saves now (when state_dir is set); replies the saved version
//   (sample_atom)                 the buffer was restarted: asks it again for the batch it waits for
#include <caf/fwd.hpp>

#include <memory>
#include <string>

#include "models/distillation/online_distiller.hpp"

namespace osd {

struct DistillerOptions {
  DistillOptions train;
  int64_t route = 0;
  int64_t min_new_records = 32;  // an update starts once this many records are new
  // "" = no persistence; else saved here every save_every published updates, before the update
  // is published (so a crash never loses a draft that served), and at shutdown; restored from
  // here at start (OnlineDistiller::find_saved: the newest intact version).
  std::string state_dir;
  int64_t save_every = 1;        // published updates between saves (and at shutdown)
  int64_t max_updates = 0;       // stop training after this many published updates (0: never)
  bool shadow = false;           // train and guard, never publish (measures the distiller's cost)
  int64_t update_every_ms = 0;   // also update after this long once any record is new (0: only min_new_records)
  bool trace = false;            // record CUDA events per update (GPU trace)
  double max_duty = 1.0;         // busy share of wall time, (0, 1]: pauses after each update
  int multiprocessors = 0;       // CUDA: train on this share of the GPU (ActorStream); 0: all of it
  int64_t held_backoff = 4;  // held updates in a row that each double the wait (0..4; 16x at most)
  // The back-off also caps the busy share: a route backed off b-fold trains at most 1/b of the
  // time (and max_duty still applies). Under load new records come faster than any update, so
  // waiting for b times the records does not slow a backed-off route; the pause does.
  bool backoff_duty = true;
  int64_t fail_on_update = -1;   // tests: throw (and die) after this update (1-based)
};

// How long the distiller waits after an update of update_ms so that its busy share of wall time
// stays at most max_duty: update_ms * (1 / max_duty - 1); 0 for max_duty >= 1.
double distiller_pause_ms(double update_ms, double max_duty);
// The busy share a distiller allows itself: max_duty, and with backoff_duty at most 1 / backoff.
double distiller_duty(double max_duty, int64_t backoff, bool backoff_duty);

caf::actor spawn_distiller(caf::actor_system& sys, std::shared_ptr<const Transformer> draft, DistillerOptions opt,
                           caf::actor buffer, caf::actor verifier, caf::actor metrics);

}  // namespace osd
