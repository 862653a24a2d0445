#!/usr/bin/env bash
# osd-bench online as a user runs it, on tiny random presets: the table, the --json line with the
# distiller's cost split into recording and training and reported per static/shadow pair
# (--repeats), and clear errors for absurd arguments.
# Usage: bench_online_cli.sh BUILD_DIR
set -euo pipefail
build=$1
bench="$build/osd-bench"
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
for d in alpha beta; do
  for i in 1 2 3; do
    echo "{\"domain\": \"$d\", \"prompt\": \"$d prompt number $i, some text to continue\"}"
  done > "$dir/$d.prompts.jsonl"
done
args=(--target tiny --draft tiny --corpora "$dir" --domains alpha beta --requests 3 --window 3
      --concurrency 2 --new-tokens 6 --warmup 0)
"$bench" online "${args[@]}" --replays static shadow record online --repeats 2 --json \
  > "$dir/out.txt" 2>"$dir/err.txt" || { cat "$dir/err.txt"; exit 1; }
grep -q "static acc" "$dir/out.txt" || { cat "$dir/out.txt"; exit 1; }
tail -1 "$dir/out.txt" | python3 -c '
import json, sys
n = json.loads(sys.stdin.read())["notes"]
assert n["distiller_overhead_pairs"]["pairs"] == 2, n["distiller_overhead_pairs"]
assert n["recording_overhead_pairs"]["pairs"] == 2, n
p = n["distiller_overhead_pairs"]
assert p["min"] <= p["mean"] <= p["max"], p
v = sorted(p["per_pair"]); m = sum(v) / len(v)
assert len(v) == 2 and abs(p["median"] - (v[0] + v[1]) / 2) < 1e-12 and abs(p["mean"] - m) < 1e-12, p
assert abs(p["stderr"] - (sum((x - m) ** 2 for x in v) / (len(v) - 1) / len(v)) ** 0.5) < 1e-12, p
assert set(n["distiller_overhead_parts"]) == {"recording", "training"}, n["distiller_overhead_parts"]
assert n["tokens_per_s_record"] > 0, n
assert n["workload"]["repeats"] == 2 and n["workload"]["distiller_multiprocessors"] == 16, n["workload"]'
# --trace: every timed request is a client span, and every admission a prefill span beside the
# rounds (the spans that account for a request's time outside its rounds).
"$bench" online "${args[@]}" --replays static --trace "$dir/t.json" --json >"$dir/out.txt" 2>"$dir/err.txt" \
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
echo "bench online cli: ok"
