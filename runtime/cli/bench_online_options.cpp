#include "runtime/cli/bench_online_options.hpp"

#include <algorithm>

#include "models/common/error.hpp"

namespace osd::bench {

bool OnlineBenchOptions::wanted(const std::string& replay) const {
  return std::find(replays.begin(), replays.end(), replay) != replays.end();
}

void OnlineBenchOptions::check() const {
  // Checked before anything runs: a wrong list used to fail after the replays it named.
  for (const auto& r : replays)
    if (r != "target" && r != "static" && r != "shadow" && r != "record" && r != "online")
      throw Error("--replays: unknown replay '" + r + "' (target static shadow record online)");
  if (!wanted("static"))
    throw Error("--replays must include static (the others are compared with it)");
  if (!export_drafts.empty() && !wanted("online"))
    throw Error("--export-drafts needs the online replay (its adapted drafts are exported)");
  if (concurrency.empty()) throw Error("--concurrency needs at least one level");
}

void add_online_options(CLI::App* cmd, OnlineBenchOptions& o) {
  cmd->add_option("--target", o.target, "model spec (default | HF folder | preset)")
      ->capture_default_str();
  cmd->add_option("--draft", o.draft, "model spec")->capture_default_str();
  cmd->add_option("--corpora", o.corpora, "folder with DOMAIN.prompts.jsonl")
      ->capture_default_str();
  cmd->add_option("--domains", o.domains, "domains, in workload order")->capture_default_str();
  cmd->add_option("--requests", o.requests, "requests per domain")
      ->check(CLI::Range(1, 100000))
      ->capture_default_str();
  cmd->add_option("--skip", o.skip,
                  "skip the first N prompts of each domain (e.g. prompts a previous run served)")
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 30))
      ->capture_default_str();
  cmd->add_option("--warmup", o.warmup,
                  "untimed requests per domain before each replay (reversed prompts, <= 16 new "
                  "tokens): graph captures and attention plans are not charged to the first domain")
      ->check(CLI::Range(0, 1000))
      ->capture_default_str();
  cmd->add_option("--window", o.window)->check(CLI::Range(1, 100000))->capture_default_str();
  cmd->add_option("--new-tokens", o.new_tokens)->check(CLI::Range(1, 4096))->capture_default_str();
  cmd->add_option("--concurrency", o.concurrency,
                  "requests in flight; several values: a sweep, every replay at each (e.g. 1 4 16 "
                  "64)")
      ->check(CLI::Range(1, 1024))
      ->capture_default_str();
  cmd->add_option("--k", o.k, "draft tokens per round (fixed, so acceptance rates compare)")
      ->check(CLI::Range(1, 64))
      ->capture_default_str();
  cmd->add_flag("--adaptive-k", o.adaptive_k,
                "choose k per request and round (osd-serve's default), up to 2k; acceptance rates "
                "then count only the rounds that drafted");
  cmd->add_option("--temperature", o.temperature)
      ->check(CLI::Range(0.0, 100.0))
      ->capture_default_str();
  cmd->add_option("--greedy-side", o.greedy_side,
                  "with --temperature > 0: prompts of the greedy side run that checks static "
                  "speculation's greedy output against target-only's")
      ->check(CLI::Range(1, 100000))
      ->capture_default_str();
  cmd->add_option("--lr", o.online.lr, "distiller learning rate")->capture_default_str();
  cmd->add_option("--max-duty", o.online.max_duty,
                  "each distiller's busy share of wall time (1 = no cap)")
      ->check(CLI::Range(1e-3, 1.0))
      ->capture_default_str();
  cmd->add_option("--distiller-multiprocessors", o.online.distiller_multiprocessors,
                  "CUDA: GPU multiprocessors the distillers train on (0 = all; "
                  "osd.online-distiller-multiprocessors)")
      ->check(CLI::Range(0, 4096))
      ->capture_default_str();
  cmd->add_option("--serve-beside-distillers", o.online.serve_beside_distillers,
                  "CUDA: verify and draft on the multiprocessors the distillers do not train on "
                  "(osd.online-serve-beside-distillers)")
      ->capture_default_str();
  cmd->add_option("--warm-attention-plans", o.warm_plans,
                  "CUDA: serving actors build their attention plans before serving "
                  "(osd.warm-attention-plans)")
      ->capture_default_str();
  cmd->add_option("--distill-autocast", o.online.autocast,
                  "CUDA: the distillers' forwards run in bf16 autocast (osd.online-autocast)")
      ->capture_default_str();
  cmd->add_option("--held-backoff", o.online.held_backoff,
                  "held updates in a row that double a route's wait (osd.online-held-backoff)")
      ->check(CLI::Range(0, 4))
      ->capture_default_str();
  cmd->add_option("--guard-z", o.online.guard_z,
                  "a publish needs a held-out gain this many standard errors clear of zero "
                  "(osd.online-guard-z; 0 = off)")
      ->check(CLI::Range(0.0, 10.0))
      ->capture_default_str();
  cmd->add_option("--backoff-duty", o.online.backoff_duty,
                  "a backed-off route also trains at most 1/back-off of the time "
                  "(osd.online-backoff-duty)")
      ->capture_default_str();
  cmd->add_option("--record-prompt", o.online.record_prompt_positions,
                  "buffer the target's distributions at the last N prompt positions too "
                  "(osd.online-record-prompt)")
      ->check(CLI::Range(0, 1 << 20))
      ->capture_default_str();
  cmd->add_option("--replay-requests", o.online.replay_requests,
                  "distillers replay whole requests (osd.online-replay-requests)")
      ->capture_default_str();
  cmd->add_option("--repeats", o.repeats,
                  "run every replay this many times (figures stated as results: >= 3), each "
                  "repeat in its own request order (shuffled within each domain) with other "
                  "seeds, the online replay from the same starting drafts; report medians with "
                  "min-max, and the distiller's cost per repeat with its 95% interval")
      ->check(CLI::Range(1, 20))
      ->capture_default_str();
  cmd->add_flag("--control", o.control,
                "also run a second static replay per repeat and report its 'cost' against the "
                "first (the no-distiller control: the noise floor of the distiller's cost)");
  cmd->add_option("--batch", o.online.batch, "records per distiller step")->capture_default_str();
  cmd->add_option("--min-new-records", o.online.min_new_records, "new records per update")
      ->capture_default_str();
  cmd->add_flag("--routes", o.routes, "one draft route per domain (requests carry their domain)");
  cmd->add_option("--device", o.device)->capture_default_str();
  cmd->add_option("--dtype", o.dtype)->capture_default_str();
  cmd->add_option("--replays", o.replays,
                  "which of target static shadow online to run (static always); record: shadow "
                  "with no training step (the distiller's cost split into recording and training)")
      ->capture_default_str();
  cmd->add_option("--tsv", o.tsv, "write acceptance per window here");
  cmd->add_option(
      "--online-state", o.online_state,
      "the online replay saves its learned drafts here at the end, and starts from them when a "
      "previous run saved some (e.g. measure batch-1 latency after a shift run adapted the "
      "drafts); the prompts it distilled on are recorded there, and a later run whose prompts "
      "overlap them fails");
  cmd->add_option("--export-drafts", o.export_drafts,
                  "write the target, the static draft and the online replay's adapted drafts "
                  "here as Hugging Face checkpoint folders, with manifest.json "
                  "(scripts/hf_assisted.py reads them)");
  cmd->add_option("--dump-prompts", o.dump_prompts,
                  "write the workload's prompts here, one JSON line each (token ids, domain, "
                  "hash): the prompts file scripts/hf_assisted.py reads");
  cmd->add_option("--trace", o.trace,
                  "write the online replay's Chrome trace here (host and CUDA-event tracks); "
                  "the static replay's goes beside it (NAME.static.json)");
  cmd->add_option("--png", o.png, "plot acceptance per window here (gnuplot; needs --tsv)");
}

}  // namespace osd::bench
