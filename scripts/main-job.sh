#!/usr/bin/env bash
# The README's main job: osd serving the default pair over ZeroMQ while its draft learns.
#  1. builds the corpora from installed Debian packages (python stdlib, C headers, KJV Bible);
#  2. uses the committed default pair in models/default (or trains it with
#     scripts/make-default-models.sh when missing: CPU time in docs/DEFAULT_MODELS.md);
#  3. runs scripts/demo.py: three osd-serve processes (online draft, static draft, target only),
#     a workload that shifts python -> c -> english, a live view, then a summary table and
#     build/demo/acceptance.png.
# Extra arguments go to scripts/demo.py (e.g. --requests-per-domain 120).
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
[ -f build/corpora/manifest.json ] || python3 scripts/build_corpora.py --out build/corpora
if [ ! -f "${OSD_DEFAULT_MODELS:-models/default}/target/model.safetensors" ] ||
   [ ! -f "${OSD_DEFAULT_MODELS:-models/default}/draft/model.safetensors" ]; then
  echo "main-job: the default pair is missing; training it (scripts/make-default-models.sh)"
  bash scripts/make-default-models.sh
fi
/usr/bin/python3 scripts/demo.py --build build --corpora build/corpora --out build/demo --routes "$@"
echo "main-job: done in $(( $(date +%s) - start )) s; plot: build/demo/acceptance.png"
