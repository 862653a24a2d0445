#!/usr/bin/env bash
# osd-train and osd-serve end to end as a user runs them: train a tiny model on a text file,
# check the loss fell and the checkpoint loads, serve it (as target and as two draft routes)
# and check a request with a domain label is served by that route; bad input fails clearly.
# Usage: train_serve_smoke.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build=$1 src=$2
work=$(mktemp -d)
log=$work/serve.log
trap 'kill $pid 2>/dev/null || true; rm -rf "$work"' EXIT
pid=
for i in $(seq 400); do echo "line $i: the quick brown fox jumps over the lazy dog."; done > "$work/text.txt"

# Bad input: a missing file and an unknown loss are clear errors (exit 1, message names them).
if "$build/osd-train" --data "$work/missing.txt" --out "$work/x" 2>"$work/err"; then echo "missing file accepted"; exit 1; fi
grep -q "missing.txt: cannot open" "$work/err" || { cat "$work/err"; exit 1; }
if "$build/osd-train" --data "$work/text.txt" --loss kl --out "$work/x" 2>"$work/err"; then echo "bad loss accepted"; exit 1; fi
grep -q "unknown loss 'kl'" "$work/err" || { cat "$work/err"; exit 1; }

# Train: 30 steps of a 1-layer model; eval loss must fall well below ln(256) = 5.55.
out=$("$build/osd-train" --data "t=$work/text.txt" --dim 32 --layers 1 --heads 2 --steps 30 --batch 8 \
      --seq-len 32 --lr 1e-2 --warmup 5 --eval-batches 1 --out "$work/model" --json 2>/dev/null | tail -1)
loss=$(echo "$out" | python3 -c 'import json,sys; print(json.load(sys.stdin)["eval_loss"])')
python3 -c "import sys; sys.exit(0 if $loss < 3.0 else 1)" || { echo "eval loss $loss did not fall"; exit 1; }
"$build/osd-checkpoint" logits --dir "$work/model" --tokens 108 105 110 >/dev/null
# Resume continues from the saved step.
"$build/osd-train" --data "t=$work/text.txt" --steps 40 --batch 8 --seq-len 32 --eval-batches 1 \
  --out "$work/model" --resume >/dev/null 2>"$work/resume.log"
grep -q "resumed at step 30" "$work/resume.log" || { echo "resume failed:"; cat "$work/resume.log"; exit 1; }

# Serve it as target and as two draft routes; a labelled request goes to its route.
"$build/osd-serve" --osd.endpoint='tcp://127.0.0.1:*' --osd.max-batch=4 --osd.max-len=128 \
  --osd.target="$work/model" --osd.draft="$work/model" --osd.routes=a,b --osd.online=false 2>"$log" &
pid=$!
for _ in $(seq 100); do grep -q "serving on" "$log" && break; sleep 0.1; done
endpoint=$(grep -o 'serving on tcp://[0-9.:]*' "$log" | awk '{print $3}')
[ -n "$endpoint" ] || { echo "server did not start:"; cat "$log"; exit 1; }
grep -q "2 draft route(s)" "$log" || { cat "$log"; exit 1; }
reply=$("$build/osd-client" --endpoint "$endpoint" --max-new-tokens 8 --temperature 0 --domain b --json "line 7: the")
echo "$reply" | tail -1 | grep -q '"route":"b"' || { echo "not served by route b: $reply"; exit 1; }
kill -INT $pid; wait $pid; pid=
# A bad model spec is a clear startup error.
if "$build/osd-serve" --osd.target=/nonexistent 2>"$work/err"; then echo "bad target accepted"; exit 1; fi
grep -q "neither a checkpoint folder" "$work/err" || { cat "$work/err"; exit 1; }

# A real tokenizer (the checked-in SentencePiece BPE model): osd-train encodes the corpus with it,
# sizes the vocabulary from it and copies it next to the weights; osd-serve finds it there
# (osd.tokenizer=auto), takes a text prompt and streams text.
spm="$src/tests/data/tokenizers/sentencepiece-bpe.model"
"$build/osd-train" --data "$work/text.txt" --tokenizer "$spm" --dim 32 --layers 1 --heads 2 --steps 20 --batch 8 \
  --seq-len 32 --lr 1e-2 --warmup 5 --eval-batches 1 --out "$work/spm-model" 2>"$work/spm-train.log" >/dev/null \
  || { cat "$work/spm-train.log"; exit 1; }
grep -q "sentencepiece-bpe.model" "$work/spm-train.log" || { cat "$work/spm-train.log"; exit 1; }
[ -f "$work/spm-model/tokenizer.model" ] || { echo "tokenizer.model not copied"; ls "$work/spm-model"; exit 1; }
python3 -c "import json,sys; sys.exit(0 if json.load(open('$work/spm-model/config.json'))['vocab_size'] == 3000 else 1)" \
  || { echo "vocabulary not taken from the tokenizer"; exit 1; }
"$build/osd-serve" --osd.endpoint='tcp://127.0.0.1:*' --osd.max-batch=2 --osd.max-len=128 \
  --osd.target="$work/spm-model" --osd.draft=none 2>"$log" &
pid=$!
for _ in $(seq 100); do grep -q "serving on" "$log" && break; sleep 0.1; done
endpoint=$(grep -o 'serving on tcp://[0-9.:]*' "$log" | awk '{print $3}')
[ -n "$endpoint" ] || { echo "server did not start:"; cat "$log"; exit 1; }
grep -q "tokenizer .*tokenizer.model" "$log" || { echo "tokenizer not found by auto:"; cat "$log"; exit 1; }
reply=$("$build/osd-client" --endpoint "$endpoint" --max-new-tokens 12 --temperature 0 --no-stream --json "line 7: the quick")
echo "$reply" | tail -1 | python3 -c 'import json,sys; d=json.load(sys.stdin); sys.exit(0 if d["event"]=="done" and len(d["tokens"])>0 and d["text"] else 1)' \
  || { echo "no text reply: $reply"; exit 1; }
kill -INT $pid; wait $pid; pid=
echo "train/serve smoke: ok"
