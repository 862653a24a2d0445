#!/usr/bin/env bash
# The paper-scale benchmark, run on the GPU host in one command (checkpoints do not
# outlive a lease there): builds osd against CUDA libtorch, trains a byte-level target of
# TinyLlama-1.1B's shape (22 layers of dim 2048, 4 kv heads; 970M parameters with 256 tokens) on
# all three corpora (python, c, english from Debian packages) and a 2-layer draft on python only,
# then measures, side by side on one card:
#   shift: python -> c -> english, REQUESTS per domain at concurrency 16, one draft route per
#          domain: acceptance per window (static vs online draft), tokens/s of target-only /
#          static / online / shadow (the distiller's cost); the static and online replays' Chrome
#          traces (host and CUDA-event tracks per actor); the adapted drafts are saved;
#   b1:    batch 1 on PROMPTS prompts of each domain that the shift run did not serve (checked by
#          hash against the prompts the shift run distilled on): latency of target-only, static
#          speculation and online speculation starting from the drafts the shift run adapted,
#          B1_REPEATS repeats (default 3; shuffled order, other seeds); writes the prompts file;
#   hf:    HF transformers on the same weights (the shift run exports the target and its adapted
#          drafts as HF checkpoints) and the b1 prompts file: generate with and without
#          assistant_model at HF's best configuration (static cache + torch.compile, with
#          fallbacks it names);
#   sweep: the b1 prompts at concurrency 1 4 16 64 (SWEEP), target-only, static and online side by
#          side, SWEEP_REPEATS repeats (default 3).
#   duty:  the shift again on the same pair with the distillers' duty capped (osd.online-max-duty)
#          at each value of DUTIES (default "0.2 0.1"): the distiller's cost against adaptation.
#          DUTY_REPLAYS="static record shadow online" splits the cost into recording (a shadow
#          replay that never trains) and training.
#   adaptive: batch 1 as in b1 (after shift), each variant from a copy of the same adapted drafts:
#          fixed k, adaptive k by the formula, by measured round costs (osd.adaptive-k-measured),
#          and by measured costs with the distillers' duty capped at 0.1.
# Usage (with .gpu/ carried: debs, corpora-paper.tar.gz; DRAFT_SECONDS: the draft's training time, default 30):
#   [PHASES="shift b1 hf sweep duty adaptive"] [REUSE_PAIR=1] [DISTILLER_MPS=16] bash scripts/paper-bench.sh OUT_DIR [TRAIN_SECONDS] [REQUESTS] [PROMPTS]
set -uo pipefail
out=${1:?usage: paper-bench.sh OUT_DIR [TRAIN_SECONDS] [REQUESTS] [PROMPTS]}
train_s=${2:-150} requests=${3:-300} prompts=${4:-10} phases=${PHASES:-shift b1 hf}
phase() { [[ " $phases " == *" $1 "* ]]; }
# The target's shape: "layers dim heads ffn [kv_heads]" (default: TinyLlama-1.1B's;
# TARGET="24 640 10 1728" is a 119M target, TARGET="12 896 14 2432" a 117.5M
# one). Decode steps are launch-bound at ~100M parameters, so a step's cost follows
# the layer count there and a verification of 5 tokens cost 1.3-1.5 steps; at 1B a step follows
# the weight bytes and a verification costs 1.05 steps. TARGET_LR, TARGET_STEPS, TARGET_BATCH:
# its peak rate, cosine length and windows a step (16 of 512 tokens fit the 1B in 80 GB).
read -r tlayers tdim theads tffn tkv <<< "${TARGET:-22 2048 32 5632 4}"
tkv=${tkv:-0} target_lr=${TARGET_LR:-3e-4}
# The draft's shape: "layers dim heads" (default "2 512 8", 6.6M parameters). Its step is
# launch-bound, so width costs little time: DRAFT="2 1024 16" has 4x the parameters.
read -r dlayers ddim dheads <<< "${DRAFT:-2 512 8}"
mkdir -p "$out"
export PYTHONUNBUFFERED=1
source <(bash .gpu/unpack-debs.sh .gpu/debs /opt/osd-deps)
[ -d build/corpora-paper ] || tar xzf .gpu/corpora-paper.tar.gz -C build 2>/dev/null || { mkdir -p build && tar xzf .gpu/corpora-paper.tar.gz -C build; }
C=build/corpora-paper
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt"
t0=$(date +%s)
cmake -S . -B build-cuda -G Ninja -DCMAKE_BUILD_TYPE=Release -DOSD_BUILD_TESTS=OFF >"$out/cmake.log" 2>&1 || { tail -30 "$out/cmake.log"; exit 1; }
cmake --build build-cuda --target osd-train osd-bench >"$out/build.log" 2>&1 || { grep -E "error" -A5 "$out/build.log" | head -40; exit 1; }
echo "build: $(( $(date +%s) - t0 )) s"
P=build-cuda/pair
# REUSE_PAIR=1: keep a pair an earlier call on this machine trained (the machine stays warm briefly).
if [ "${REUSE_PAIR:-0}" = 1 ] && [ -f $P/target/config.json ] && [ -f $P/draft/config.json ]; then
  echo "pair: reused from $P"
else
t0=$(date +%s)
./build-cuda/osd-train --data python=$C/python.train.txt --data c=$C/c.train.txt --data english=$C/english.train.txt \
  --eval python=$C/python.eval.txt --eval c=$C/c.eval.txt --eval english=$C/english.eval.txt \
  --dim "$tdim" --layers "$tlayers" --heads "$theads" --kv-heads "$tkv" --ffn "$tffn" --max-pos 1024 --seq-len 512 --batch "${TARGET_BATCH:-16}" --steps "${TARGET_STEPS:-700}" --lr "$target_lr" \
  --warmup 100 --eval-every 0 --eval-batches 4 --seed 1 --device cuda --time-budget "$train_s" \
  --out $P/target --json 2>"$out/train-target.err" | tee "$out/train-target.txt" | tail -8
echo "target: $(( $(date +%s) - t0 )) s"
t0=$(date +%s)
./build-cuda/osd-train --data python=$C/python.train.txt --eval python=$C/python.eval.txt \
  --dim "$ddim" --layers "$dlayers" --heads "$dheads" --max-pos 1024 --seq-len 256 --batch 32 --steps 3000 --lr 2e-3 --warmup 100 \
  --eval-every 0 --eval-batches 4 --seed 2 --device cuda --time-budget "${DRAFT_SECONDS:-30}" --out $P/draft --json \
  2>"$out/train-draft.err" | tee "$out/train-draft.txt" | tail -4
echo "draft: $(( $(date +%s) - t0 )) s"
fi
# DISTILLER_MPS=N: the distillers train on N of the GPU's multiprocessors (a green context;
# default 16, osd's default; 0: the whole GPU).
common=(--target $P/target --draft $P/draft --corpora $C --device cuda --dtype bfloat16 --k 4 --new-tokens 64
        --distiller-multiprocessors "${DISTILLER_MPS:-16}")
# The b1 and sweep phases serve as osd-serve does: the goodput scheduler picks k per sequence and
# round (0 included, up to 2k). SCHEDULE=fixed serves every round at k = 4 instead.
[ "${SCHEDULE:-goodput}" = fixed ] && serve_k=() || serve_k=(--adaptive-k)
t0=$(date +%s)
phase shift && rm -rf $P/online $P/export && ./build-cuda/osd-bench online "${common[@]}" --routes --requests "$requests" --window 50 --concurrency 16 \
  --online-state $P/online --export-drafts $P/export --trace "$out/trace-shift.json" --tsv "$out/shift.tsv" --json 2>"$out/shift-c16.log" \
  | tee "$out/shift-c16.txt" | tail -30
gzip -9f "$out"/trace-shift*.json 2>/dev/null
echo "shift: $(( $(date +%s) - t0 )) s"
t0=$(date +%s)
# The b1 and sweep runs start from copies of the shift run's state, so each starts from the same
# adapted drafts (a run saves its own learning into the copy it was given).
phase b1 && rm -rf $P/online-b1 && cp -r $P/online $P/online-b1 && ./build-cuda/osd-bench online "${common[@]}" --routes --requests "$prompts" --skip "$requests" --window "$prompts" --concurrency 1 \
  --online-state $P/online-b1 --replays target static online "${serve_k[@]}" --repeats "${B1_REPEATS:-3}" --dump-prompts "$out/b1-prompts.jsonl" \
  --trace "$out/trace-b1.json" --json 2>"$out/b1.log" | tee "$out/b1.txt" | tail -14
gzip -9f "$out"/trace-b1*.json 2>/dev/null
echo "batch 1: $(( $(date +%s) - t0 )) s"
t0=$(date +%s)
phase hf && { python3 scripts/hf_assisted.py --export $P/export --prompts "$out/b1-prompts.jsonl" --repeats "${B1_REPEATS:-3}" \
  --json "$out/hf.json" 2>"$out/hf.err" | grep -v "^{"; tail -3 "$out/hf.err"; }
echo "hf: $(( $(date +%s) - t0 )) s"
t0=$(date +%s)
phase sweep && rm -rf $P/online-sweep && cp -r $P/online $P/online-sweep && ./build-cuda/osd-bench online "${common[@]}" --routes --requests "$prompts" --skip "$requests" --window "$prompts" \
  --concurrency ${SWEEP:-1 4 16 64} --online-state $P/online-sweep --replays target static online "${serve_k[@]}" --repeats "${SWEEP_REPEATS:-3}" \
  --json 2>"$out/sweep.log" | tee "$out/sweep.txt" | grep -E "^\| "
echo "sweep: $(( $(date +%s) - t0 )) s"
if phase adaptive; then
  for variant in fixed scheduled scheduled-duty0.1; do
    flags=()
    [[ $variant != fixed ]] && flags+=(--adaptive-k)
    [[ $variant == *duty0.1 ]] && flags+=(--max-duty 0.1)
    rm -rf "$P/online-$variant" && cp -r "$P/online" "$P/online-$variant"
    t0=$(date +%s)
    ./build-cuda/osd-bench online "${common[@]}" --routes --requests "$prompts" --skip "$requests" --window "$prompts" \
      --concurrency 1 --online-state "$P/online-$variant" --replays target static online "${flags[@]}" --json \
      2>"$out/b1-$variant.log" | tee "$out/b1-$variant.txt" | grep -E "^\| "
    echo "batch 1, adaptive k ($variant): $(( $(date +%s) - t0 )) s"
  done
fi
for duty in ${DUTIES:-0.2 0.1}; do
  phase duty || break
  t0=$(date +%s)
  ./build-cuda/osd-bench online "${common[@]}" --routes --requests "$requests" --window 50 --concurrency 16 \
    --max-duty "$duty" --online-state $P/online-duty$duty --tsv "$out/shift-duty$duty.tsv" \
    --replays ${DUTY_REPLAYS:-target static shadow online} --json \
    2>"$out/shift-duty$duty.log" | tee "$out/shift-duty$duty.txt" | grep -E "distiller_overhead|tokens_per_s"
  echo "duty $duty: $(( $(date +%s) - t0 )) s"
done
