#!/usr/bin/env bash
# Builds the libFuzzer targets (clang, ASan + UBSan) and runs each for SECONDS (default 300).
#   bash scripts/fuzz.sh [SECONDS]        logs and new corpus entries in build-fuzz/
# Targets: the safetensors header parser, tokenizer.json loading (+ encode/decode/stream), and
# SentencePiece .model parsing (+ encode/decode). Seeds: tests/fuzz/corpus/*.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-300}"
out=build-fuzz
mkdir -p "$out"
flags=(-std=c++17 -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -I.)
text_sources=(models/text/*.cpp models/weights/safetensors_header.cpp models/common/files.cpp)
for target in safetensors_header tokenizer_json sentencepiece; do
  if [ ! -x "$out/fuzz_$target" ] || [ -n "$(find tests/fuzz models -newer "$out/fuzz_$target" -name '*.[ch]pp' | head -1)" ]; then
    clang++ "${flags[@]}" "tests/fuzz/fuzz_$target.cpp" "${text_sources[@]}" -lonig -lutf8proc -o "$out/fuzz_$target"
  fi
done
declare -A seeds=([safetensors_header]=safetensors [tokenizer_json]=tokenizer_json [sentencepiece]=sentencepiece)
for target in safetensors_header tokenizer_json sentencepiece; do
  corpus="$out/corpus-$target"
  mkdir -p "$corpus"
  echo "fuzz_$target: ${seconds}s"
  "$out/fuzz_$target" "$corpus" "tests/fuzz/corpus/${seeds[$target]}" -max_total_time="$seconds" -max_len=65536 \
    -rss_limit_mb=4096 -print_final_stats=1 >"$out/fuzz_$target.log" 2>&1 || { tail -40 "$out/fuzz_$target.log"; exit 1; }
  grep -E "stat::number_of_executed_units|stat::peak_rss_mb" "$out/fuzz_$target.log" | tr '\n' ' '
  echo "corpus $(ls "$corpus" | wc -l) files"
done
