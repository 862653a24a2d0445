#!/usr/bin/env bash
# osd-bench spec, serve and model as a user runs them, small: the --json line reports alpha,
# predicted and measured speedup with efficiency = measured / predicted, medians with min-max
# over --repeats, greedy equality of speculative with target-only output (0 mismatches in
# float32), the scheduler's k fields, and the verification-cost ratio of `model --tokens 1 5`.
# Usage: bench_cli.sh BUILD_DIR
set -euo pipefail
bench="$1/osd-bench"
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
"$bench" spec --vocab 512 --hidden 64 --layers 3 --prompts 3 --prompt-len 6 --new-tokens 12 --repeats 2 \
  --json >"$dir/spec.txt" 2>"$dir/err.txt" || { cat "$dir/err.txt"; exit 1; }
grep -q "greedy mismatches" "$dir/spec.txt" || { cat "$dir/spec.txt"; exit 1; }
tail -1 "$dir/spec.txt" | python3 -c '
import json, sys
n = json.loads(sys.stdin.read())["notes"]
modes = n["modes"]
assert len(modes) == 5 and n["repeats"] == 2, n
base = modes["target only"]["tokens_per_s"]["per_repeat"]
for name, m in modes.items():
    if name == "target only":
        continue
    g = m["greedy_equal"]
    assert g["checked"] == 6 and g["mismatched"] == 0, (name, g)
    for a, k, c, p, meas, e, t, b in zip(m["alpha"]["per_repeat"], m["mean_k"]["per_repeat"],
                                         m["c"]["per_repeat"], m["predicted_speedup"]["per_repeat"],
                                         m["measured_speedup"]["per_repeat"], m["efficiency"]["per_repeat"],
                                         m["tokens_per_s"]["per_repeat"], base):
        k = k if "adaptive" in name else 4
        formula = (k + 1 if a >= 1 else (1 - a ** (k + 1)) / (1 - a)) / (k * c + 1)
        assert abs(p - formula) < 1e-9 * max(1, formula), (name, p, formula)
        assert abs(meas - t / b) < 1e-9 * max(1, meas), (name, meas, t, b)
        assert abs(e - meas / p) < 1e-9 * max(1, e), (name, e, meas, p)
        assert 0 <= a <= 1, a'
# Sampled: greedy equality from a side run of the same prompts.
"$bench" spec --vocab 512 --hidden 64 --layers 3 --prompts 2 --prompt-len 6 --new-tokens 8 --temperature 0.8 \
  --json >"$dir/spec.txt" 2>"$dir/err.txt" || { cat "$dir/err.txt"; exit 1; }
tail -1 "$dir/spec.txt" | python3 -c '
import json, sys
for name, m in json.loads(sys.stdin.read())["notes"]["modes"].items():
    if "greedy_equal" in m:
        g = m["greedy_equal"]
        assert g["checked"] == 2 and g["mismatched"] == 0 and "side run" in g["how"], (name, g)'
"$bench" serve --layers 2 --concurrency 1 3 --requests 4 --prompt-len 6 --new-tokens 8 --repeats 2 \
  --json >"$dir/serve.txt" 2>"$dir/err.txt" || { cat "$dir/err.txt"; exit 1; }
tail -1 "$dir/serve.txt" | python3 -c '
import json, sys
n = json.loads(sys.stdin.read())["notes"]
levels = n["levels"]
assert [(l["spec"], l["concurrency"]) for l in levels] == [("off", 1), ("off", 3), ("on", 1), ("on", 3)], levels
for l in levels:
    t = l["tokens_per_s"]
    assert len(t["per_repeat"]) == 2 and t["min"] <= t["median"] <= t["max"], t
    assert "k_distribution" in l and "k0_round_share" in l, l
    if l["spec"] == "on":
        g = l["greedy_equal"]
        assert g["checked"] == 8 and g["mismatched"] == 0, g'
"$bench" model --sizes tiny --batches 1 2 --tokens 5 1 --steps 3 --prompt 8 --json >"$dir/model.txt" \
  2>"$dir/err.txt" || { cat "$dir/err.txt"; exit 1; }
tail -1 "$dir/model.txt" | python3 -c '
import json, sys
j = json.loads(sys.stdin.read())
v = j["notes"]["verify_cost_ratio"]
assert [(x["batch"], x["tokens"]) for x in v] == [(1, 5), (2, 5)], v
for x in v:
    assert abs(x["ratio"] - x["step_ms"] / x["one_token_step_ms"]) < 1e-9, x
rows = j["rows"]
assert [r["tokens"] for r in rows] == [1, 5, 1, 5], rows'
echo "bench cli: ok"
