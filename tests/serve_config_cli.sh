#!/usr/bin/env bash
# osd-serve's configuration errors, as a user meets them: each is one line on stderr, exit code 2,
# and says what to do (the nearest option, the missing --, the range, a device this build cannot
# use, a draft whose vocabulary differs from the target's). --help and --print-config-doc exit 0.
#   tests/serve_config_cli.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build="$1"
source_dir="$2"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"  # no conf/osd.conf here: only the arguments count

# expect_error "EXPECTED TEXT" ARGS...: exit code 2 and exactly one stderr line containing it.
expect_error() {
  local expected="$1"
  shift
  local rc=0
  timeout 120 "$build/osd-serve" "$@" >"$work/out" 2>"$work/err" || rc=$?
  if [ "$rc" != 2 ]; then
    echo "osd-serve $*: exit code $rc, expected 2"; cat "$work/err"; exit 1
  fi
  if [ "$(wc -l <"$work/err")" != 1 ]; then
    echo "osd-serve $*: expected one line, got:"; cat "$work/err"; exit 1
  fi
  if ! grep -qF -- "$expected" "$work/err"; then
    echo "osd-serve $*: expected '$expected', got:"; cat "$work/err"; exit 1
  fi
  echo "ok: osd-serve $* -> $(cat "$work/err")"
}

expect_error "osd-serve: unknown option --osd.kk (did you mean --osd.k?)" --osd.kk=6
expect_error "osd-serve: stray argument 'osd.k=100': options start with -- (did you mean --osd.k=100?)" osd.k=100
expect_error "osd-serve: stray argument 'prompt'" --osd.k=2 prompt
expect_error "osd-serve: osd.k must be in [0, 64] (got 100)" --osd.k=100
expect_error "osd-serve: osd.max-batch must be in [1, 4096] (got 0)" --osd.max-batch=0
echo "osd {
  k = 3
  max-bach = 4
}" >"$work/typo.conf"
expect_error "typo.conf:3: unknown option osd.max-bach (did you mean osd.max-batch?)" --config-file="$work/typo.conf"

# A device this build or machine cannot use: one line, never libtorch's list of backends.
expect_error "--osd.device=cpu" --osd.device=cuda:99
if grep -q "this build has no CUDA" "$work/err"; then
  grep -qF "osd-serve: this build has no CUDA (libtorch CPU); use --osd.device=cpu" "$work/err"
else
  grep -qE "cuda:99, but this machine has [0-9]+ CUDA device|no CUDA device is visible" "$work/err"
fi
expect_error "--osd.draft-device=cpu" --osd.draft-device=cuda:99

# A target of another vocabulary than the bundled default draft (10m: 8192 tokens, the default
# pair: 256): both sizes, the defaulted draft, the fix.
expect_error "the target 10m has a vocabulary of 8192 tokens, the draft default one of 256: osd.draft defaulted to the bundled default pair's draft" --osd.target=10m
grep -qF -- "--osd.draft=none" "$work/err"
expect_error "the draft tiny-draft one of 256; pass --osd.draft=none" --osd.target=10m --osd.draft=tiny-draft

# --help lists every option; --print-config-doc is docs/CONFIG.md.
"$build/osd-serve" --help >"$work/help"
grep -qF -- "--osd.k=integer  [default: 4]  [0, 64]" "$work/help"
grep -qF -- "--scheduler.policy=text  [default: sharing]  sharing | stealing" "$work/help"
"$build/osd-serve" --print-config-doc >"$work/CONFIG.md"
if ! diff -q "$work/CONFIG.md" "$source_dir/docs/CONFIG.md" >/dev/null; then
  echo "docs/CONFIG.md is not the generated text: run scripts/gen-config-doc.sh"; exit 1
fi
echo "serve_config_cli: ok"
