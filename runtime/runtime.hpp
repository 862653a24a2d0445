#pragma once
// osd's embedding API. A service builds one Runtime, submits generation requests from any
// thread, streams tokens through a callback, and waits on a handle for the final result.
// No torch or CAF types appear here.
//
//   std::string err;
//   auto rt = osd::Runtime::create(options, &err);       // null + err on bad options
//   auto h = rt->submit(params, [](const osd::TokenChunk& c) { std::cout << c.text; });
//   osd::GenerateResult r = h->get();                     // r.finish: length|eos|stop|cancelled|error
//   rt->shutdown();                                       // finishes in-flight work first
#include <caf/fwd.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <future>
#include <memory>
#include <string>
#include <vector>

#include "models/text/text_tokenizer.hpp"

namespace osd {

class Transformer;

// A user-written actor placed in the pipeline between intake and the router. It is spawned with
// the next hop and receives (route_atom, Submission, sink) for every admitted request; it
// forwards them to `next` (changed or not) or answers the sink itself with a DoneEvent (and then
// must not forward). Message types: actors/messages.hpp. See examples/request_logger.cpp.
using StageFactory = std::function<caf::actor(caf::actor_system& sys, caf::actor next)>;

// Online distillation: the draft learns from the target's distributions at verified positions
// while serving (buffer + distiller actors; docs/ARCHITECTURE.md).
struct OnlineOptions {
  bool enabled = false;
  std::string loss = "fkl";          // fkl | rkl | jsd | tvd
  double jsd_beta = 0.5;
  double lr = 1e-3;
  double weight_decay = 0.0;
  int64_t warmup_steps = 10;
  double clip = 1.0;                 // max gradient norm
  int64_t batch = 256;               // records per gradient step (records of one request share a forward)
  int64_t steps_per_update = 4;
  int64_t min_new_records = 128;     // an update starts once this many records are new
  int64_t update_every_ms = 0;       // ... or once this long has passed and any record is new (0: off)
  bool record_all_positions = true;  // false: only the position of the first rejection
  // A sequence the scheduler does not draft for (k = 0) records the target's distribution of its
  // next token every this-many tokens, so drafts keep learning while speculation is off (0: never).
  int64_t record_plain_every = 8;
  int64_t record_top_k = 64;         // 0: store full distributions
  // Also buffer the target's distributions at the last this-many prompt positions, which its
  // prefill computes anyway (0: none). A whole-request replay trains on them in the same student
  // forward as the request's verified positions.
  int64_t record_prompt_positions = 0;
  int64_t buffer_bytes = 64 << 20;   // buffer memory budget, split evenly over routes (oldest evicted first)
  int64_t heldout_every = 10;        // every n-th request is held out for the guard
  int64_t heldout_records = 2048;    // the held-out slice keeps this many newest records per route
  // Replays draw whole requests, whose records share one student forward (DistillBuffer);
  // false draws records one by one (a forward over a whole context each).
  bool replay_requests = true;
  // Each held update in a row (no clear gain) doubles the records a route waits for before its
  // next update, for the first held_backoff of them (0..4; with rejections, 16x at most): a draft
  // that fits its traffic then trains, and takes the GPU from serving, less often.
  int64_t held_backoff = 4;
  // The back-off also caps the route's busy share at 1 / back-off (16 held or rejected updates'
  // worth: 1/16). Under load records arrive faster than updates run, so only this pause makes a
  // route that has stopped gaining give the GPU back to serving. false: records only.
  bool backoff_duty = true;
  double max_duty = 1.0;             // each distiller's busy share of wall time, (0, 1] (1: no cap)
  // On CUDA: the distillers' kernels run on this many of the GPU's multiprocessors only (a green
  // context, CUDA 12.5+; the driver rounds up to its granularity), leaving the rest to serving.
  // 0: they share the whole GPU. Where green contexts are missing, the whole GPU, with a warning.
  // 16 of an H100's 132 (measured on an H100): the distiller cost 4.6-13.2% of
  // throughput at concurrency 16 (mean 9.2%) instead of 31-37%, and adapted more slowly (english
  // +0.26-0.29 acceptance in 300 requests instead of +0.38).
  int64_t distiller_multiprocessors = 16;
  // With a share above: true runs the verifier and the drafters on the GPU's other
  // multiprocessors (the rest of the same split), so no verification block shares one with a
  // training kernel, but serving never uses the distillers' share, even while they are idle.
  // false (the default): serving takes the whole GPU. On an H100 the whole GPU cost
  // less both ways: at concurrency 16 the distillers cost 3.2-4.3% of throughput against
  // 10.1-16.0% beside them (same process), and a batch-1 verification took 1.501 ms against
  // 1.548 beside them (static: 1.450).
  bool serve_beside_distillers = false;
  double guard_margin = -0.01;       // publish unless held-out acceptance drops by more (< 0: must gain that much)
  double rollback_margin = 0.05;     // roll the trainable copy back when it drops by more than this
  // A publish also needs its held-out gain to be this many standard errors clear of zero, paired
  // on the same records with held-out requests as the units (0: off). An H100 run published a
  // python draft on +0.014 held-out acceptance that served 0.608 against static 0.653.
  double guard_z = 2.0;
  // Held-out records a route needs before its guard can publish (updates train meanwhile). With 8
  // the first publish rested on one request's records, and in one of four CPU demo runs such a
  // candidate made the python draft worse for the rest of the run (0.41 against 0.53).
  int64_t min_heldout = 256;
  // The sequential guard instead of min_heldout and guard_z (models/distillation/
  // sequential_guard.hpp): it judges from 3 held-out requests on, at a threshold that keeps the
  // chance of publishing a draft that does not gain below guard_alpha between two publishes.
  bool sequential_guard = false;
  double guard_alpha = 0.05;
  bool inject_nan = false;           // tests: every training loss is NaN
  // CUDA: the distillers' forwards run in bf16 autocast (float32 weights and optimizer), on the
  // tensor cores; false: float32 throughout (then the H100's matrix units sit idle).
  bool autocast = true;
  // Persistence: each route's draft (HF format), optimizer state and version are saved in
  // state_dir/route-NAME/draft every save_every published updates (before the update is
  // published, so a crash never loses a draft that served) and at shutdown, and restored at start
  // ("" = off); its held-out slice is saved there at shutdown (heldout.bin) and restored too, so
  // the guard judges the first update after a restart. Every file is written crash-safely with
  // checksums; a torn or corrupt one is detected at start and the version before it is used.
  // A distiller that dies is restarted from this state (without it, its route serves on with
  // the last draft it published).
  std::string state_dir;
  int64_t save_every = 1;
  int64_t max_updates = 0;           // stop training after this many published updates (0: never)
  bool shadow = false;               // train and guard but never serve the updates (cost measurements)
};

// A draft route: a query class served by its own draft, with its own share of the distillation
// buffer and its own distiller. Requests whose `domain` equals the name go there; the router
// chooses for the others (actors/router.hpp).
struct DraftRoute {
  std::string name;
  std::shared_ptr<Transformer> draft;
};

// How speculative sampling draws a sampled request's tokens (models/speculation/sampling.hpp):
//   rejection  the exact p/q rule: the most accepted draft tokens; the text follows the target's
//              distribution, but which text a seed gives depends on where the scheduler drafted
//   coupled    draft and target draw each position from the same seeded uniform: the text equals
//              target-only sampling with that seed, token for token, whatever the load
enum class SpecSampling { server_default, rejection, coupled };

struct RuntimeOptions {
  std::shared_ptr<Transformer> target;  // required
  std::shared_ptr<Transformer> draft;   // optional; null: target-only decoding
  // Several drafts, one per query class. Empty: one route named "default" serving `draft`
  // (ignored when routes are given).
  std::vector<DraftRoute> routes;
  int64_t router_eval_every = 8;   // automatic router: evaluate 1 in n automatic requests (0: never)
  int64_t router_eval_warmup = 16; // ...and every one until each route has this many examples
  int64_t max_batch = 32;               // sequences in flight on the verifier (KV cache slots)
  int64_t max_len = 1024;               // KV cache positions per sequence (context limit)
  // CUDA: the verifier and each drafter run every prefill shape once before serving, so cuDNN's
  // attention plans (kept per thread) are built then rather than on a request (57-60 ms each on
  // an H100). Startup takes ~1-2 s longer.
  bool warm_attention_plans = true;
  int64_t k = 4;                        // draft tokens per round when adaptive_k is off
  // k per sequence and round by the goodput planner (0 included), from measured round costs and
  // each sequence's acceptance (docs/ARCHITECTURE.md, "Scheduling rounds"); false: always k.
  bool adaptive_k = true;
  int64_t k_max = 8;
  int64_t groups = 2;                   // rounds of a route in flight at once (2 overlaps drafting)
  // Prompt tokens prefilled between two rounds, so admissions do not stall running requests
  // (0: whole prompts at once).
  int64_t prefill_chunk = 512;
  // How sampled requests that do not say are drawn (GenerateParams::sampling).
  SpecSampling sampling = SpecSampling::coupled;
  int64_t max_in_flight = 256;          // admitted, unfinished requests; beyond: error "busy"
  // The largest max_new_tokens a request may ask for. Whatever it is, prompt + max_new_tokens must
  // fit the context (max_len and the models' max_position_embeddings) or the request is refused
  // at admission ("context_length_exceeded").
  int64_t max_new_tokens_limit = 512;
  int64_t max_id_bytes = 256;           // longer request ids are refused
  // A route's buffer or distiller that dies is restarted up to this many times; after that its
  // route serves on with its last draft (health: degraded).
  int64_t max_restarts = 3;
  int threads = 0;                      // CAF scheduler threads; 0: number of cores
  // CAF scheduler policy: "sharing" (idle workers wait on a condition variable, so a message wakes
  // one at once) or "stealing" (CAF's default: idle workers poll, then sleep up to 10 ms between
  // polls; each hop of a request through the intake, router and bridge could wait that long,
  // ~100 ms per batch-1 request on the H200).
  std::string scheduler = "sharing";
  std::function<std::string(int64_t)> token_text;  // token -> text piece; empty: no text
  // A real tokenizer (HF checkpoint folder): each sequence's text comes from a StreamDecoder with
  // its prompt as context (leading-space rules, no split UTF-8 characters). Wins over token_text.
  std::shared_ptr<const TextTokenizer> tokenizer;
  // Fault injection for tests (1-based; -1: never): the first drafter throws on this proposal,
  // the verifier throws inside this round. Both are recovered from without losing requests. The
  // first route's buffer throws on this records message, its distiller after this update: both
  // die and are restarted (Runtime::health counts it). Runtime::inject_failure ends any actor.
  int64_t inject_drafter_failure = -1;
  // Tests: k of each row instead of the goodput planner's, from (sequence, round, cap); clamped to
  // [0, cap]. Empty: the planner.
  std::function<int64_t(int64_t seq, int64_t round, int64_t cap)> k_override;
  int64_t inject_verifier_failure = -1;
  int64_t inject_buffer_failure = -1;
  int64_t inject_distiller_failure = -1;
  bool trace = false;  // record per-round drafting / verification intervals (trace_json)
  std::vector<StageFactory> stages;  // user actors between intake and router, in order
  OnlineOptions online;
};

struct GenerateParams {
  std::string id;                       // optional; unique among requests in flight
  std::vector<int64_t> prompt_tokens;
  int64_t max_new_tokens = 64;
  double temperature = 1.0;             // 0: greedy
  int64_t top_k = 0;                    // 0: off
  double top_p = 1.0;
  uint64_t seed = 0;
  SpecSampling sampling = SpecSampling::server_default;
  std::vector<int64_t> eos_ids;
  std::vector<std::string> stop;
  std::string domain;                   // route: a route's name; other values: automatic
  bool stream = true;                   // call on_tokens as tokens are accepted
};

struct GenerateResult {
  std::string id;
  std::vector<int64_t> tokens;
  std::string text;
  std::string finish;                   // length | eos | stop | cancelled | error
  std::string error_code, error_message;
  int64_t num_drafts = 0, num_draft_tokens = 0, num_accepted_tokens = 0;
  std::vector<int64_t> accepted_per_position;
  double ttft_ms = 0, total_ms = 0;
  std::string route;                    // the draft route that served it
  bool ok() const { return finish != "error"; }
};

struct TokenChunk {
  std::string id;
  std::vector<int64_t> tokens;
  std::string text;
};

// Liveness, as the runtime's supervisor sees it (Runtime::health).
enum class HealthStatus {
  ok,        // every actor runs
  degraded,  // a route's buffer or distiller stopped for good: its route serves with its last draft
  draining,  // intake is closed (Runtime::drain / shutdown): requests in flight finish
  failed,    // an actor the requests need died: every request is answered "unavailable"; restart
};
const char* health_status_name(HealthStatus s);

struct ActorHealth {
  std::string name;          // verifier, intake, router, metrics, client_bridge, buffer:ROUTE, ...
  bool alive = true;
  int64_t restarts = 0;
  std::string last_failure;  // why it last died ("" never)
};

struct RuntimeHealth {
  HealthStatus status = HealthStatus::ok;
  std::string reason;        // why status is not ok
  std::vector<ActorHealth> actors;
  int64_t in_flight = 0;     // calls of the embedding API not yet answered
};

class Runtime;

class RequestHandle {
 public:
  const std::string& id() const { return id_; }
  GenerateResult get();  // waits for the result (idempotent)
  bool wait_for(std::chrono::milliseconds timeout);
  void cancel();

 private:
  friend class Runtime;
  RequestHandle(std::string id, std::shared_future<GenerateResult> done, Runtime* rt);
  std::string id_;
  std::shared_future<GenerateResult> done_;
  Runtime* runtime_;
};

class Runtime {
 public:
  static std::unique_ptr<Runtime> create(RuntimeOptions options, std::string* error);
  ~Runtime();
  Runtime(const Runtime&) = delete;
  Runtime& operator=(const Runtime&) = delete;

  // on_tokens and on_done run on the runtime's client thread, in order, never concurrently with
  // each other; on_done runs exactly once per submission (before the handle's result is ready).
  std::shared_ptr<RequestHandle> submit(GenerateParams params,
                                        std::function<void(const TokenChunk&)> on_tokens = {},
                                        std::function<void(const GenerateResult&)> on_done = {});
  // Cancels the call with this id while it is in flight; a no-op for an unknown or finished id
  // (it never touches a later request that reuses the id).
  void cancel(const std::string& id);
  std::string stats_json();  // metrics + intake + verifier, one JSON object
  // Liveness per actor, without asking any actor (cheap; safe while actors are dead).
  RuntimeHealth health() const;
  std::string health_json() const;  // the same as JSON: {"status", "reason", "actors", "in_flight"}
  // Chrome trace (chrome://tracing, Perfetto) of recorded rounds: one track per actor, one
  // slice per proposal, verification and distillation update, timed on the host; on CUDA also
  // "<actor> (GPU)" tracks timed by CUDA events on each actor's stream. Empty unless
  // RuntimeOptions.trace.
  std::string trace_json();
  // Closes intake (new submissions get "shutting_down"), then waits up to `deadline` for the
  // requests in flight to finish. Returns how many are still in flight (0: drained); shutdown()
  // then finishes or cancels them.
  int64_t drain(std::chrono::milliseconds deadline);
  // Refuses new work, then finishes (or, with false, cancels) everything in flight, saves the
  // distillers' state and held-out slices, then stops the actors. Every submitted request gets
  // exactly one result either way.
  void shutdown(bool finish_in_flight = true);
  // Tests and drills: ends the named actor (health's names) as a crash would. False when there
  // is no such actor.
  bool inject_failure(const std::string& actor);

  // The actor system and actor handles (runtime/runtime_impl.hpp, private to runtime/).
  struct Impl;

 private:
  explicit Runtime(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace osd
