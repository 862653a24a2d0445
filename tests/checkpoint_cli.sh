#!/usr/bin/env bash
# osd-checkpoint's subcommands name the checkpoint folder alike: random --dir writes the folder
# that logits --dir and convert --dir read; random's earlier --out still works, unlisted.
# Usage: checkpoint_cli.sh BUILD_DIR
set -euo pipefail
build=$1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
ckpt=$build/osd-checkpoint

"$ckpt" random --preset tiny --seed 3 --dir "$work/a" >/dev/null
[ -f "$work/a/config.json" ] || fail "random --dir wrote no checkpoint"
a=$("$ckpt" logits --dir "$work/a" --tokens 1 2 3)
# The old name writes the same checkpoint.
"$ckpt" random --preset tiny --seed 3 --out "$work/b" >/dev/null
[ "$("$ckpt" logits --dir "$work/b" --tokens 1 2 3)" = "$a" ] || fail "random --out wrote another checkpoint"
"$ckpt" convert --dir "$work/a" --dtype bfloat16 --out "$work/c" >/dev/null
[ -f "$work/c/config.json" ] || fail "convert wrote no checkpoint"
# Help lists --dir, not the alias; no folder, or both names, is a clear error.
help=$("$ckpt" random --help)
echo "$help" | grep -q -- "--dir" || fail "random --help lacks --dir: $help"
! echo "$help" | grep -q -- "--out" || fail "random --help lists the alias --out: $help"
if "$ckpt" random --preset tiny 2>"$work/err"; then fail "random without a folder succeeded"; fi
grep -q -- "--dir DIR is required" "$work/err" || fail "no folder: $(cat "$work/err")"
if "$ckpt" random --dir "$work/d" --out "$work/e" 2>"$work/err"; then fail "--dir with --out succeeded"; fi
echo "checkpoint cli: ok"
