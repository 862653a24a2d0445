#!/usr/bin/env bash
# Trains osd's default target/draft pair (the recorded command: fixed seeds, fixed steps) and
# writes them, in bfloat16, to models/default/{target,draft}. The committed pair was made by
#   OSD_TRAIN_DEVICE=cuda bash scripts/make-default-models.sh       (on an H100: 37 s + 7 s)
# and the main job runs this script (on the CPU) only when the pair is missing: the same recipe
# and seeds; its CPU time: docs/DEFAULT_MODELS.md. Interrupted runs resume.
#
#   target: 4 layers, dim 256, 3.3M parameters, pretrained on all three domains
#   draft:  1 layer, dim 96, ~0.16M parameters, distilled (forward KL) from the target on the
#           python domain only, so it starts with low acceptance on c and english.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${OSD_BUILD:-build}
CORPORA=${OSD_CORPORA:-$BUILD/corpora}
WORK=$BUILD/default-train
OUT=${OSD_DEFAULT_MODELS:-models/default}
TARGET_STEPS=${OSD_TARGET_STEPS:-3000}
DRAFT_STEPS=${OSD_DRAFT_STEPS:-1000}
DEVICE=${OSD_TRAIN_DEVICE:-cpu}
[ -f "$CORPORA/manifest.json" ] || python3 scripts/build_corpora.py --out "$CORPORA"
data=() evals=()
for d in python c english; do
  data+=(--data "$d=$CORPORA/$d.train.txt")
  evals+=(--eval "$d=$CORPORA/$d.eval.txt")
done
mkdir -p "$WORK"
"$BUILD/osd-train" "${data[@]}" "${evals[@]}" --dim 256 --layers 4 --heads 4 --max-pos 1024 \
  --steps "$TARGET_STEPS" --batch 32 --seq-len 256 --lr 3e-3 --warmup 100 --weight-decay 0.1 \
  --eval-every 250 --eval-batches 4 --save-every 250 --seed 1 --device "$DEVICE" --resume --out "$WORK/target" --json \
  | tee "$WORK/target.log"
"$BUILD/osd-train" --data "python=$CORPORA/python.train.txt" --eval "python=$CORPORA/python.eval.txt" \
  "${evals[@]:2}" --teacher "$WORK/target" --loss fkl --dim 96 --layers 1 --heads 2 --max-pos 1024 \
  --steps "$DRAFT_STEPS" --batch 32 --seq-len 256 --lr 3e-3 --warmup 50 --weight-decay 0.0 \
  --eval-every 250 --eval-batches 4 --save-every 250 --seed 2 --device "$DEVICE" --resume --out "$WORK/draft" --json \
  | tee "$WORK/draft.log"
mkdir -p "$OUT"
"$BUILD/osd-checkpoint" convert --dir "$WORK/target" --dtype bfloat16 --out "$OUT/target"
"$BUILD/osd-checkpoint" convert --dir "$WORK/draft" --dtype bfloat16 --out "$OUT/draft"
echo "make-default-models: wrote $OUT/target and $OUT/draft"
