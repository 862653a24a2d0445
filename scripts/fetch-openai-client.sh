#!/usr/bin/env bash
# Installs the official `openai` npm client, pinned by scripts/openai-client/package-lock.json, into
# build/openai-client (or $OSD_OPENAI_CLIENT), for the HTTP front end's client tests
# (tests/http_openai.sh). Idempotent. Prints the node_modules folder on its last line.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
dest="${OSD_OPENAI_CLIENT:-$root/build/openai-client}"
mkdir -p "$dest"
if ! cmp -s "$root/scripts/openai-client/package-lock.json" "$dest/package-lock.json" ||
   [ ! -f "$dest/node_modules/openai/package.json" ]; then
  cp "$root/scripts/openai-client/package.json" "$root/scripts/openai-client/package-lock.json" "$dest/"
  # openai 7.55 declares node >= 22; it runs on node 20 (checked by tests/http_openai.sh).
  (cd "$dest" && npm ci --no-audit --no-fund --loglevel=error --engine-strict=false >&2)
fi
echo "$dest/node_modules"
