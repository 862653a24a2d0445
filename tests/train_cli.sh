#!/usr/bin/env bash
# osd-train's messages to a user: a teacher whose vocabulary differs from the student's names
# both sizes and the flag that fixes it (--tokenizer), and that flag does fix it; --steps not
# longer than --warmup warns; the evaluation table gives the loss per byte for byte-level models
# and per token for tokenised ones.
# Usage: train_cli.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build=$1 src=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
for i in $(seq 200); do echo "line $i: the quick brown fox jumps over the lazy dog."; done > "$work/text.txt"
spm="$src/tests/data/tokenizers/sentencepiece-bpe.model"  # 3000 tokens
tiny=(--data "$work/text.txt" --dim 16 --layers 1 --heads 2 --batch 2 --seq-len 16 --eval-batches 1)

# A byte-level model: the table is per byte; --warmup 1 < --steps 3: no warning.
"$build/osd-train" "${tiny[@]}" --steps 3 --warmup 1 --out "$work/bytes" >"$work/out" 2>"$work/err" \
  || { cat "$work/err"; fail "byte-level training"; }
grep -q "eval loss (nats/byte)   bits/byte" "$work/out" || fail "byte table: $(cat "$work/out")"
! grep -q "warning: --warmup" "$work/err" || fail "a warm-up shorter than the run warned"

# A tokenised model (the teacher below): per token; --warmup 5 >= --steps 3 warns, naming both.
"$build/osd-train" "${tiny[@]}" --tokenizer "$spm" --steps 3 --warmup 5 --json --out "$work/teacher" \
  >"$work/out" 2>"$work/err" || { cat "$work/err"; fail "tokenised training"; }
grep -q "eval loss (nats/token)  bits/token" "$work/out" || fail "token table: $(cat "$work/out")"
! grep -q "nats/byte" "$work/out" || fail "a tokenised model reported nats/byte"
tail -1 "$work/out" | grep -q '"eval_loss_unit":"nats/token"' || fail "json unit: $(tail -1 "$work/out")"
grep -q "warning: --warmup 5 is not shorter than --steps 3" "$work/err" || fail "no warm-up warning: $(cat "$work/err")"

# Distilling from it without its tokenizer: refused, with both sizes and the fix.
if "$build/osd-train" "${tiny[@]}" --teacher "$work/teacher" --loss fkl --steps 2 --warmup 1 --out "$work/student" \
  >/dev/null 2>"$work/err"; then fail "a student with another vocabulary was trained"; fi
grep -q "vocabulary of 3000 tokens, the student 256" "$work/err" || fail "sizes: $(cat "$work/err")"
grep -q -- "add --tokenizer $work/teacher" "$work/err" || fail "no --tokenizer hint: $(cat "$work/err")"
[ ! -e "$work/student" ] || fail "a refused run wrote its output"
# An explicit --vocab that contradicts the teacher: the hint says to drop it.
if "$build/osd-train" "${tiny[@]}" --teacher "$work/teacher" --tokenizer "$work/teacher" --vocab 4000 --loss fkl \
  --steps 2 --warmup 1 --out "$work/student" >/dev/null 2>"$work/err"; then fail "--vocab 4000 was accepted"; fi
grep -q "drop --vocab" "$work/err" || fail "--vocab hint: $(cat "$work/err")"
# The suggested fix works.
"$build/osd-train" "${tiny[@]}" --teacher "$work/teacher" --tokenizer "$work/teacher" --loss fkl --steps 2 --warmup 1 \
  --out "$work/student" >/dev/null 2>"$work/err" || fail "the suggested --tokenizer failed: $(cat "$work/err")"
echo "train cli: ok"
