#!/usr/bin/env bash
# Runs a benchmark command and keeps its log with what a reader needs to trust it: the command
# line, the commit (and whether the tree had changes), the date, the machine (CPU model, cores,
# memory, kernel; the GPU where nvidia-smi exists), then the command's whole output. Exits with
# the command's status.
#   bash scripts/record-run.sh OUT_FILE COMMAND [ARG...]
# e.g. flock /tmp/osd-build.lock bash scripts/record-run.sh docs/results/cpu/spec.log \
#        ./build/osd-bench spec --repeats 3 --json
set -uo pipefail
[ $# -ge 2 ] || { echo "usage: record-run.sh OUT_FILE COMMAND [ARG...]" >&2; exit 2; }
out=$1; shift
mkdir -p "$(dirname "$out")"
{
  printf '# command: '; printf '%q ' "$@"; echo
  echo "# commit: $(git rev-parse HEAD 2>/dev/null || echo "${OSD_COMMIT:-unknown}")$(
    git status --porcelain --untracked-files=no 2>/dev/null | grep -q . && echo ' (with uncommitted changes)')"
  echo "# date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
  echo "# machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(nproc) cores," \
       "$(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo), $(uname -sr)"
  command -v nvidia-smi >/dev/null 2>&1 && echo "# gpu: $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | head -1)"
  echo "# load before: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo
} > "$out"
t0=$(date +%s)
"$@" >> "$out" 2>&1
rc=$?
{ echo; echo "# exit: $rc, $(( $(date +%s) - t0 )) s, load after: $(cut -d' ' -f1-3 /proc/loadavg)"; } >> "$out"
exit $rc
