#!/usr/bin/env bash
# osd-tokenize as a user runs it: text -> ids (a JSON array) -> text, --prompt adds bos, --info
# names the special ids, and bad input (missing file, ids that are not JSON, an id outside the
# vocabulary) fails with exit 1 and a message naming the problem.
# Usage: tokenize_cli.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build=$1 src=$2
tok="$build/osd-tokenize"
spm="$src/tests/data/tokenizers/sentencepiece-bpe.model"
text='Hello, world: 123 tokens'
ids=$(printf '%s' "$text" | "$tok" --tokenizer "$spm")
echo "$ids" | python3 -c 'import json,sys; v=json.load(sys.stdin); assert isinstance(v, list) and v and all(isinstance(i, int) for i in v), v'
back=$(echo "$ids" | "$tok" --tokenizer "$spm" --decode)
[ "$back" = "$text" ] || { echo "round trip: '$back' != '$text'"; exit 1; }
first=$(printf '%s' "$text" | "$tok" --tokenizer "$spm" --prompt | python3 -c 'import json,sys; print(json.load(sys.stdin)[0])')
[ "$first" = "1" ] || { echo "--prompt did not add bos 1: $first"; exit 1; }
"$tok" --tokenizer "$spm" --info | python3 -c 'import json,sys; d=json.load(sys.stdin); assert d["vocab_size"] == 3000 and d["bos"] == 1 and d["eos"] == 2, d'
[ "$(printf 'abc' | "$tok" --tokenizer bytes)" = "[97,98,99]" ] || { echo "bytes"; exit 1; }
if "$tok" --tokenizer /nonexistent/tokenizer.json </dev/null 2>"$build/tok.err"; then echo "missing file accepted"; exit 1; fi
grep -q "/nonexistent/tokenizer.json: no such tokenizer" "$build/tok.err" || { cat "$build/tok.err"; exit 1; }
if echo "[1, 2," | "$tok" --tokenizer "$spm" --decode 2>"$build/tok.err"; then echo "bad JSON accepted"; exit 1; fi
grep -q "expected a JSON array of token ids" "$build/tok.err" || { cat "$build/tok.err"; exit 1; }
if echo "[5, 99999]" | "$tok" --tokenizer "$spm" --decode 2>"$build/tok.err"; then echo "bad id accepted"; exit 1; fi
grep -q "token id 99999 is not in the vocabulary" "$build/tok.err" || { cat "$build/tok.err"; exit 1; }
echo "osd-tokenize: ok"
