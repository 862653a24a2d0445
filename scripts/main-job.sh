#!/usr/bin/env bash
# The README's main job. Until the embedded default models and the demo exist (issue 7), it shows
# the engine on random structured models: target-only vs speculative decoding (fixed and
# adaptive k, a good and an unrelated draft), then the transformer core's throughput.
set -euo pipefail
cd "$(dirname "$0")/.."
./build/osd-bench spec --prompts 4 --new-tokens 48
./build/osd-bench model --sizes 10m --batches 1 16 --prompt 64 --steps 16
