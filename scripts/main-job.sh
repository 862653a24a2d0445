#!/usr/bin/env bash
# The README's main job. Until the embedded default models exist (issue 7), it is a smoke run of
# the core: a benchmark of the transformer on random weights.
set -euo pipefail
cd "$(dirname "$0")/.."
./build/osd-bench model --sizes 10m --batches 1 16 --prompt 64 --steps 16
