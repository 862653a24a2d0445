#!/usr/bin/env bash
# Runs on the GPU host (the device tool), from the repository root, with .gpu/ carried along
# (see docs/GPU.md): builds osd against pip torch's CUDA libtorch, runs the [cuda] tests and
# the fast CPU ones and the GPU benchmarks. Logs go to $OUT when set.
set -uo pipefail
out=${OUT:-/tmp/osd-gpu-out}
mkdir -p "$out"
source <(bash .gpu/unpack-debs.sh .gpu/debs /opt/osd-deps)
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt"
t0=$(date +%s)
cmake -S . -B build-cuda -G Ninja -DCMAKE_BUILD_TYPE=Release >"$out/cmake.log" 2>&1 || { tail -40 "$out/cmake.log"; exit 1; }
cmake --build build-cuda >"$out/build.log" 2>&1 || { grep -E "error|Error" -A5 "$out/build.log" | head -60; exit 1; }
echo "build: $(( $(date +%s) - t0 )) s"
# The full suite runs in CI on the CPU; here the [cuda] tests and the fast ones ([stats] took
# 527 s on the GPU host's oversubscribed CPU threads, so it stays out).
./build-cuda/osd-tests "[cuda]" 2>&1 | tail -3
./build-cuda/osd-tests "~[stats]" 2>&1 | tail -3
for step in "$@"; do echo "== $step"; eval "$step" 2>&1 | tee -a "$out/bench.log"; done
