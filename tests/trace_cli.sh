#!/usr/bin/env bash
# osd-bench trace as a user runs it: a small trace gives the busy time, overlap and round
# medians in the table and in the --json line; a missing file and a file that is not a Chrome
# trace fail with exit 1 and a message naming the problem.
# Usage: trace_cli.sh BUILD_DIR
set -euo pipefail
build=$1
bench="$build/osd-bench"
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
cat > "$dir/trace.json" <<'JSON'
{"traceEvents": [
 {"tid": "drafter", "name": "propose g0", "ph": "X", "pid": 1, "ts": 0, "dur": 100},
 {"tid": "verifier", "name": "verify g0", "ph": "X", "pid": 1, "ts": 150, "dur": 300},
 {"tid": "drafter", "name": "propose g0", "ph": "X", "pid": 1, "ts": 520, "dur": 100},
 {"tid": "verifier", "name": "verify g0", "ph": "X", "pid": 1, "ts": 660, "dur": 340}]}
JSON
"$bench" trace "$dir/trace.json" --json > "$dir/out.txt"
grep -q "round median ms, hop_to_verify" "$dir/out.txt" || { cat "$dir/out.txt"; exit 1; }
tail -1 "$dir/out.txt" | python3 -c '
import json, sys
d = json.loads(sys.stdin.read())
rows = {r["quantity"]: r["value"] for r in d["rows"]}
assert rows["rounds"] == 2, rows
assert abs(rows["round median ms, hop_to_verify"] - 0.045) < 1e-9, rows
assert abs(rows["busy ms, verifier"] - 0.64) < 1e-9, rows'
if "$bench" trace "$dir/missing.json" 2>"$dir/err"; then echo "missing file accepted"; exit 1; fi
grep -q "cannot open $dir/missing.json" "$dir/err" || { cat "$dir/err"; exit 1; }
echo '{"events": []}' > "$dir/bad.json"
if "$bench" trace "$dir/bad.json" 2>"$dir/err"; then echo "bad trace accepted"; exit 1; fi
grep -q "not a Chrome trace" "$dir/err" || { cat "$dir/err"; exit 1; }
echo "trace cli: ok"
