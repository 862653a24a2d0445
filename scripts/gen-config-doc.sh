#!/usr/bin/env bash
# Regenerates docs/CONFIG.md from osd-serve's option schema (runtime/config_schema.cpp) and its
# table of environment variables (runtime/config_doc.cpp). The text test
# "config: docs/CONFIG.md is the generated text" fails until this has run after a change.
#   scripts/gen-config-doc.sh [BUILD_DIR]   (default: build)
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
build="${1:-$repo/build}"
ninja -C "$build" osd-serve >/dev/null
"$build/osd-serve" --print-config-doc >"$repo/docs/CONFIG.md.tmp"
mv "$repo/docs/CONFIG.md.tmp" "$repo/docs/CONFIG.md"
echo "wrote docs/CONFIG.md"
