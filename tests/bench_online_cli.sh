#!/usr/bin/env bash
# osd-bench online as a user runs it, on tiny random presets: the table, the --json line with the
# distiller's cost split into recording and training and reported per repeat with its 95%
# interval (--repeats, --control), alpha with predicted and measured speedup and efficiency,
# greedy equality with target-only, the prompts file and the exported drafts (read by
# scripts/hf_assisted.py --dry-run), the prompt-overlap check against a saved state, the
# concurrency sweep, and clear errors for absurd arguments.
# Usage: bench_online_cli.sh BUILD_DIR [SOURCE_DIR]
set -euo pipefail
build=$1
src=${2:-$(cd "$(dirname "$0")/.." && pwd)}
bench="$build/osd-bench"
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
for d in alpha beta; do
  for i in 1 2 3 4 5 6; do
    echo "{\"domain\": \"$d\", \"prompt\": \"$d prompt number $i, some text to continue\"}"
  done > "$dir/$d.prompts.jsonl"
done
args=(--target tiny --draft tiny --corpora "$dir" --domains alpha beta --requests 3 --window 3
      --new-tokens 6 --warmup 0)
"$bench" online "${args[@]}" --concurrency 2 --replays target static shadow record online --repeats 2 --control \
  --online-state "$dir/state" --dump-prompts "$dir/prompts.jsonl" --export-drafts "$dir/export" --json \
  > "$dir/out.txt" 2>"$dir/err.txt" || { cat "$dir/err.txt"; exit 1; }
grep -q "static acc" "$dir/out.txt" || { cat "$dir/out.txt"; exit 1; }
grep -q "osd-bench online sweep" "$dir/out.txt" || { cat "$dir/out.txt"; exit 1; }
grep -q "greedy_mismatches: .*static 0/12" "$dir/out.txt" || { grep greedy "$dir/out.txt"; exit 1; }
grep -q "prompt_overlap: 0" "$dir/out.txt" || { cat "$dir/out.txt"; exit 1; }
# Adaptation speed per domain (the tiny draft equals the target: no gain, so no half-gain point).
grep -q "requests_to_half_gain: alpha - (no gain)" "$dir/out.txt" || { grep half "$dir/out.txt"; exit 1; }
tail -1 "$dir/out.txt" | python3 -c '
import json, sys
n = json.loads(sys.stdin.read())["notes"]
# The distiller cost per repeat: mean, median, standard error, 95% interval, resolved at 5%.
for key in ("distiller_overhead_pairs", "recording_overhead_pairs", "no_distiller_control_pairs"):
    p = n[key]
    assert p["pairs"] == 2, (key, p)
    assert p["min"] <= p["mean"] <= p["max"], p
    v = sorted(p["per_pair"]); m = sum(v) / len(v)
    assert abs(p["median"] - (v[0] + v[1]) / 2) < 1e-12 and abs(p["mean"] - m) < 1e-12, p
    se = (sum((x - m) ** 2 for x in v) / (len(v) - 1) / len(v)) ** 0.5
    assert abs(p["stderr"] - se) < 1e-12, p
    lo, hi = p["ci95"]
    assert abs(lo - (m - 12.706 * se)) < 1e-9 and abs(hi - (m + 12.706 * se)) < 1e-9, p
    assert p["resolved_at_5pct"] == (lo > 0.05 or hi < 0.05), p
assert set(n["distiller_overhead_parts"]) == {"recording", "training"}, n["distiller_overhead_parts"]
assert n["tokens_per_s_record"] > 0, n
assert n["workload"]["repeats"] == 2 and n["workload"]["distiller_multiprocessors"] == 16, n["workload"]
assert n["prompt_overlap"] == 0 and n["prompt_repeats_dropped"] == 0, n
assert len(n["levels"]) == 1 and n["levels"][0]["concurrency"] == 2, n["levels"]
reps = n["replays"]
assert set(reps) == {"target", "static", "control", "shadow", "record", "online"}, set(reps)
for name in ("static", "control", "shadow", "record", "online"):
    r = reps[name]
    # Greedy output equals target-only output on every request of every repeat (float32 CPU).
    g = r["greedy_equal"]
    assert g["checked"] == 12 and g["mismatched"] == 0 and g["first_mismatch"] is None, (name, g)
    for key in ("tokens_per_s", "latency_ms_p50", "latency_ms_p99", "alpha", "predicted_speedup",
                "measured_speedup", "efficiency"):
        s = r[key]
        assert len(s["per_repeat"]) == 2 and s["min"] <= s["median"] <= s["max"], (name, key, s)
    assert 0 <= r["alpha"]["median"] <= 1, r["alpha"]
    assert r["alpha_method"], r
    assert "k_distribution" in r and "k0_round_share" in r, r
    # efficiency = measured / predicted, per repeat; predicted is the formula at alpha, k, c.
    for a, p, m, e in zip(r["alpha"]["per_repeat"], r["predicted_speedup"]["per_repeat"],
                          r["measured_speedup"]["per_repeat"], r["efficiency"]["per_repeat"]):
        k, c = r["k"], r["c"]
        formula = (k + 1 if a >= 1 else (1 - a ** (k + 1)) / (1 - a)) / (k * c + 1)
        assert abs(p - formula) < 1e-9 * max(1, formula), (name, a, p, formula)
        assert abs(e - m / p) < 1e-9 * max(1, e), (name, e, m, p)
    tps = r["tokens_per_s"]["per_repeat"]; base = reps["target"]["tokens_per_s"]["per_repeat"]
    for m, t, b in zip(r["measured_speedup"]["per_repeat"], tps, base):
        assert abs(m - t / b) < 1e-9 * max(1, m), (name, m, t, b)
d = n["per_domain"]["alpha"]["static"]
for key in ("latency_ms", "acceptance", "alpha", "predicted_speedup", "measured_speedup", "efficiency"):
    assert key in d, (key, d)'
# The prompts file: one line per request with its FNV-1a 64 hash, as hf_assisted.py checks it.
python3 - "$dir/prompts.jsonl" <<'PY'
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
assert len(lines) == 6 and [l["domain"] for l in lines] == ["alpha"] * 3 + ["beta"] * 3, lines
def fnv(ids):
    h = 1469598103934665603
    for t in ids:
        for b in t.to_bytes(8, "little"):
            h = ((h ^ b) * 1099511628211) & (2 ** 64 - 1)
    return f"{h:016x}"
assert all(fnv(l["prompt_ids"]) == l["hash"] and l["new_tokens"] == 6 for l in lines), lines
assert bytes(lines[0]["prompt_ids"]).decode() == "alpha prompt number 1, some text to continue"
PY
# The exported drafts are HF checkpoints the comparison script accepts (its dry run needs no torch).
for f in manifest.json target/config.json target/model.safetensors draft-static/config.json \
         draft-online-default/model.safetensors; do
  [ -f "$dir/export/$f" ] || { echo "no export/$f"; ls -R "$dir/export"; exit 1; }
done
python3 "$src/scripts/hf_assisted.py" --export "$dir/export" --prompts "$dir/prompts.jsonl" --dry-run \
  > "$dir/hf.txt" || { cat "$dir/hf.txt"; exit 1; }
grep -q "inputs are consistent" "$dir/hf.txt" || { cat "$dir/hf.txt"; exit 1; }
sed -E 's/"prompt_ids": ?\[97/"prompt_ids":[98/' "$dir/prompts.jsonl" > "$dir/bad.jsonl"
if python3 "$src/scripts/hf_assisted.py" --export "$dir/export" --prompts "$dir/bad.jsonl" --dry-run \
  2>"$dir/hf.err"; then echo "hf_assisted.py accepted prompts that do not match their hashes"; exit 1; fi
grep -q "do not match their hash" "$dir/hf.err" || { cat "$dir/hf.err"; exit 1; }
# A draft the distiller published and saved (a sealed folder under the route's state) is the
# one exported: guard z 0 publishes the first update.
"$bench" online "${args[@]}" --replays target static online --guard-z 0 --min-new-records 8 \
  --online-state "$dir/state-saved" --export-drafts "$dir/export-saved" >"$dir/out.txt" 2>"$dir/err.txt" \
  || { cat "$dir/err.txt"; exit 1; }
python3 -c 'import json,sys; m=json.load(open(sys.argv[1])); assert m["online_drafts"]["default"]["saved"], m' \
  "$dir/export-saved/manifest.json" || exit 1
# The saved state records the prompts it distilled on: serving them again as evaluation prompts
# fails before anything runs; later prompts (--skip 3) pass the check.
[ "$(wc -l < "$dir/state/distilled_prompts.txt")" = 6 ] || { cat "$dir/state/distilled_prompts.txt"; exit 1; }
if "$bench" online "${args[@]}" --replays static online --online-state "$dir/state" >"$dir/out.txt" 2>"$dir/err.txt"; then
  echo "accepted evaluation prompts the saved drafts were distilled on"; exit 1
fi
grep -q "6 of the 6 prompts were distilled on" "$dir/err.txt" || { cat "$dir/err.txt"; exit 1; }
"$bench" online "${args[@]}" --replays static --skip 3 --online-state "$dir/state" --json >"$dir/out.txt" 2>"$dir/err.txt" \
  || { cat "$dir/err.txt"; exit 1; }
tail -1 "$dir/out.txt" | python3 -c '
import json, sys
n = json.loads(sys.stdin.read())["notes"]
assert n["prompt_overlap"] == 0 and "(6 prompts)" in n["prompt_overlap_checked_against"], n
assert n["replays"]["static"]["greedy_equal"]["checked"] == 0, n["replays"]["static"]["greedy_equal"]'
# A sweep: every replay at each concurrency.
"$bench" online "${args[@]}" --replays target static --concurrency 1 3 --json >"$dir/out.txt" 2>"$dir/err.txt" \
  || { cat "$dir/err.txt"; exit 1; }
tail -1 "$dir/out.txt" | python3 -c '
import json, sys
levels = json.loads(sys.stdin.read())["notes"]["levels"]
assert [l["concurrency"] for l in levels] == [1, 3], levels
for l in levels:
    assert set(l["replays"]) == {"target", "static"}, l
    assert l["replays"]["static"]["greedy_equal"]["mismatched"] == 0, l'
# --trace: every timed request is a client span, and every admission a prefill span beside the
# rounds (the spans that account for a request's time outside its rounds).
"$bench" online "${args[@]}" --concurrency 2 --replays static --trace "$dir/t.json" --json >"$dir/out.txt" 2>"$dir/err.txt" \
  || { cat "$dir/err.txt"; exit 1; }
python3 -c '
import json, sys
events = json.load(open(sys.argv[1]))["traceEvents"]
def count(tid, name):
    return sum(1 for e in events if e["tid"] == tid and e["name"].startswith(name))
assert count("client", "request ") == 6, count("client", "request ")
assert count("verifier", "prefill") == 6, count("verifier", "prefill")
assert count("verifier", "verify") >= 6, count("verifier", "verify")
assert all(e["dur"] >= 0 for e in events)' "$dir/t.static.json"
fails() {  # fails MESSAGE ARGS...: exit != 0 and MESSAGE on stderr
  local want=$1; shift
  if "$bench" online "${args[@]}" "$@" >"$dir/out.txt" 2>"$dir/err.txt"; then
    echo "accepted: $*"; exit 1
  fi
  grep -q -- "$want" "$dir/err.txt" || { echo "no '$want' for: $*"; cat "$dir/err.txt"; exit 1; }
}
fails "repeats" --repeats 0
fails "distiller-multiprocessors" --distiller-multiprocessors -1
fails "must include static" --replays shadow online
fails "unknown replay 'shadows'" --replays static shadows online
fails "needs the online replay" --replays static --export-drafts "$dir/x"
fails "concurrency" --concurrency 0
echo "bench online cli: ok"
