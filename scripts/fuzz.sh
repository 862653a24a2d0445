#!/usr/bin/env bash
# Builds the libFuzzer targets (Debian's clang, ASan + UBSan) and runs each one.
#   bash scripts/fuzz.sh [SECONDS]           each target for SECONDS (default 300); logs and new
#                                            corpus entries in build-fuzz/
#   bash scripts/fuzz.sh --runs N [--out D]  CI: each target for N inputs past its checked-in corpus
#                                            (the CTest test fuzz.ci); builds into D (default build-fuzz)
# Targets: the request frame parser of the ZeroMQ front end, tokenizer.json loading, SentencePiece
# .model parsing, a fixed tokenizer's encode and decode, the distillation records reader, the
# safetensors header parser and the checkpoint loader's checks (config.json + safetensors).
# Seeds: tests/fuzz/corpus/<target>/ (checked in) and tests/data/fuzz-regressions.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=300 runs= out=build-fuzz
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) runs=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    *) seconds=$1; shift ;;
  esac
done
mkdir -p "$out"
flags=(-std=c++17 -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -I.
       "-DOSD_SOURCE_DIR=\"$PWD\"")
common=(models/common/files.cpp models/common/saved_folder.cpp)
text=(models/text/*.cpp)
declare -A sources=(
  [request]="runtime/request_parser.cpp"
  [tokenizer_json]="${text[*]}"
  [sentencepiece]="${text[*]}"
  [tokenizer_codec]="${text[*]}"
  [records]="models/distillation/record_file.cpp"
  [safetensors_header]="models/weights/safetensors_header.cpp"
  [checkpoint]="models/weights/hf_layout.cpp models/weights/safetensors_header.cpp models/core/config.cpp"
)
targets=(request tokenizer_json sentencepiece tokenizer_codec records safetensors_header checkpoint)
for target in "${targets[@]}"; do
  bin="$out/fuzz_$target"
  # shellcheck disable=SC2086
  if [ ! -x "$bin" ] || [ -n "$(find tests/fuzz models runtime -newer "$bin" -name '*.[ch]pp' | head -1)" ]; then
    echo "building fuzz_$target"
    clang++ "${flags[@]}" "tests/fuzz/fuzz_$target.cpp" ${sources[$target]} "${common[@]}" \
      -lonig -lutf8proc -lz -o "$bin"
  fi
done
for target in "${targets[@]}"; do
  seeds="tests/fuzz/corpus/$target"
  new="$out/corpus-$target"
  mkdir -p "$new"
  if [ -n "$runs" ]; then
    limit=(-runs="$runs")
    echo -n "fuzz_$target: $runs runs; "
  else
    limit=(-max_total_time="$seconds")
    echo -n "fuzz_$target: ${seconds}s; "
  fi
  "$out/fuzz_$target" "$new" "$seeds" tests/data/fuzz-regressions "${limit[@]}" -max_len=65536 \
    -rss_limit_mb=4096 -timeout=10 -print_final_stats=1 >"$out/fuzz_$target.log" 2>&1 ||
    { tail -40 "$out/fuzz_$target.log"; echo "fuzz_$target FAILED (log: $out/fuzz_$target.log)"; exit 1; }
  grep -E "stat::number_of_executed_units|stat::peak_rss_mb" "$out/fuzz_$target.log" | tr '\n' ' '
  echo "corpus $(ls "$new" | wc -l) new files"
done
