#!/usr/bin/env bash
# Runs on the GPU host (the device tool), from the repository root, with .gpu/ carried along
# (see docs/GPU.md): builds osd against pip torch's CUDA libtorch, runs every test case that
# matches SPEC (default "[cuda]") each in its own process, then the benchmark steps given as
# arguments. Exits non-zero when the build fails, when any test case fails, or when a benchmark
# step fails; a skipped case (it could not run here) is counted apart, never as passed.
#
# Usage: [OUT=DIR] [OSD_COMMIT=SHA] bash scripts/gpu-run.sh [--build-dir DIR] [--no-build]
#                                       [--tests SPEC] [--no-tests] [BENCH_STEP ...]
#   --build-dir DIR  the build folder (default build-cuda)
#   --no-build       use DIR as it is (e.g. this machine's CPU build: build)
#   --tests SPEC     the Catch test spec of the cases to run (default "[cuda]")
#   BENCH_STEP       a shell command run after the tests (its output goes to OUT/bench.log)
# Writes to OUT (default /tmp/osd-gpu-out): gpu.txt (the card), tests/NAME.log per case and
# tests.json, the record of the test run:
#   {"commit", "dirty", "card", "driver", "build_dir", "spec", "counts": {"passed", "skipped",
#    "failed"}, "passed": [names], "skipped": [{"name", "reason"}], "failed": [{"name", "exit"}],
#    "bench_steps": [{"command", "exit"}], "seconds"}
# The commit comes from git where the working tree is a checkout, else from OSD_COMMIT (the
# device tool copies the tree without .git: pass OSD_COMMIT=$(git rev-parse HEAD)).
# Without .gpu/ (e.g. on the development machine, against its CPU build) the system's packages
# are used and the card is "none".
set -uo pipefail
out=${OUT:-/tmp/osd-gpu-out}
build_dir=build-cuda build=1 spec="[cuda]" run_tests=1
while [ $# -gt 0 ]; do
  case $1 in
    --build-dir) build_dir=$2; shift 2 ;;
    --no-build) build=0; shift ;;
    --tests) spec=$2; shift 2 ;;
    --no-tests) run_tests=0; shift ;;
    --) shift; break ;;
    -*) echo "gpu-run.sh: unknown option $1" >&2; exit 2 ;;
    *) break ;;
  esac
done
mkdir -p "$out/tests"
t_start=$(date +%s)
if [ -f .gpu/unpack-debs.sh ] && [ -d .gpu/debs ]; then
  source <(bash .gpu/unpack-debs.sh .gpu/debs /opt/osd-deps)
else
  echo "gpu-run.sh: no .gpu/debs here: using the system's packages"
fi
if command -v nvidia-smi >/dev/null 2>&1; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt"
else
  echo "none (no nvidia-smi)" | tee "$out/gpu.txt"
fi
commit=$(git rev-parse HEAD 2>/dev/null || echo "${OSD_COMMIT:-unknown}")
dirty=$(git status --porcelain --untracked-files=no 2>/dev/null | grep -q . && echo true || echo false)

if [ "$build" = 1 ]; then
  t0=$(date +%s)
  cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release >"$out/cmake.log" 2>&1 \
    || { tail -40 "$out/cmake.log"; exit 1; }
  cmake --build "$build_dir" >"$out/build.log" 2>&1 \
    || { grep -E "error|Error" -A5 "$out/build.log" | head -60; exit 1; }
  echo "build: $(( $(date +%s) - t0 )) s"
fi
tests_bin="$build_dir/osd-tests"

# One process per test case, as CTest runs them: exit 0 passed, 77 skipped (OSD_SKIP with
# --skip-exit-code 77), anything else failed (timeouts included).
passed=() skipped=() skip_reasons=() failed=() failed_rc=()
if [ "$run_tests" = 1 ]; then
  [ -x "$tests_bin" ] || { echo "gpu-run.sh: no $tests_bin"; exit 1; }
  mapfile -t cases < <("$tests_bin" "$spec" --list-test-names-only | sed '/^$/d')
  [ ${#cases[@]} -gt 0 ] || { echo "gpu-run.sh: no test case matches $spec"; exit 1; }
  echo "tests: ${#cases[@]} cases match $spec"
  for name in "${cases[@]}"; do
    # Catch's test spec: commas and brackets in a name are escaped (as catch_discover_tests does).
    escaped=$(printf '%s' "$name" | sed -e 's/\\/\\\\/g' -e 's/,/\\,/g' -e 's/\[/\\[/g' -e 's/\]/\\]/g')
    log="$out/tests/$(printf '%s' "$name" | tr -c 'A-Za-z0-9_.-' '_' | cut -c1-120).log"
    timeout "${OSD_TEST_TIMEOUT:-1500}" "$tests_bin" "$escaped" -w NoTests --skip-exit-code 77 \
      >"$log" 2>&1
    rc=$?
    case $rc in
      0) passed+=("$name"); echo "  passed   $name" ;;
      77) skipped+=("$name"); skip_reasons+=("$(grep -m1 '^SKIPPED: ' "$log" | sed 's/^SKIPPED: //')")
          echo "  skipped  $name (${skip_reasons[-1]})" ;;
      *) failed+=("$name"); failed_rc+=("$rc"); echo "  FAILED   $name (exit $rc)"; tail -25 "$log" ;;
    esac
  done
fi

bench_cmds=() bench_rc=()
for step in "$@"; do
  echo "== $step" | tee -a "$out/bench.log"
  eval "$step" 2>&1 | tee -a "$out/bench.log"
  bench_rc+=("${PIPESTATUS[0]}")
  bench_cmds+=("$step")
done

# The record: names travel as NUL-separated lists so that any character survives.
list() { [ $# -gt 0 ] && printf '%s\0' "$@"; }
python3 - "$out/tests.json" "$commit" "$dirty" "$(cat "$out/gpu.txt")" "$build_dir" "$spec" \
  "$(( $(date +%s) - t_start ))" \
  3< <(list "${passed[@]}") 4< <(list "${skipped[@]}") 5< <(list "${skip_reasons[@]}") \
  6< <(list "${failed[@]}") 7< <(list "${failed_rc[@]}") 8< <(list "${bench_cmds[@]}") \
  9< <(list "${bench_rc[@]}") <<'PY'
import json, os, sys
path, commit, dirty, card, build_dir, spec, seconds = sys.argv[1:8]
def read(fd):
    with os.fdopen(fd, "rb") as f:
        data = f.read().decode("utf-8", "replace")
    return data.split("\0")[:-1]  # each entry ends with a NUL; entries may be empty
passed, skipped, reasons, failed, failed_rc, cmds, cmd_rc = (read(fd) for fd in range(3, 10))
fields = card.split(", ")
record = {
    "commit": commit, "dirty": dirty == "true", "card": fields[0],
    "driver": fields[2] if len(fields) > 2 else None, "build_dir": build_dir, "spec": spec,
    "counts": {"passed": len(passed), "skipped": len(skipped), "failed": len(failed)},
    "passed": passed,
    "skipped": [{"name": n, "reason": r} for n, r in zip(skipped, reasons)],
    "failed": [{"name": n, "exit": int(c)} for n, c in zip(failed, failed_rc)],
    "bench_steps": [{"command": c, "exit": int(r)} for c, r in zip(cmds, cmd_rc)],
    "seconds": int(seconds),
}
with open(path, "w") as f:
    json.dump(record, f, indent=1)
print("tests.json: " + json.dumps(record["counts"]) + ", commit " + commit + ", card " + fields[0])
PY
status=0
[ ${#failed[@]} -eq 0 ] || { echo "gpu-run.sh: ${#failed[@]} test case(s) failed: ${failed[*]}"; status=1; }
for rc in "${bench_rc[@]}"; do [ "$rc" = 0 ] || { echo "gpu-run.sh: a benchmark step failed"; status=1; }; done
exit $status
