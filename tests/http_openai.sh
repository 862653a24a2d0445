#!/usr/bin/env bash
# osd-serve's HTTP front end driven by the official openai npm client (tests/http/openai_client.mjs):
# start the server on the default models with both front ends on free ports, run the client
# tests, then stop the server with SIGINT and check it exits cleanly.
# Usage: http_openai.sh BUILD_DIR SOURCE_DIR NODE_MODULES
set -euo pipefail
build=$1 src=$2 modules=${OSD_OPENAI_CLIENT:+$OSD_OPENAI_CLIENT/node_modules}
modules=${modules:-$3}
log=$(mktemp)
# Fixed k and no online distillation: every run verifies the same shapes, so greedy text over
# HTTP and over ZeroMQ come from identical computations.
"$build/osd-serve" --osd.endpoint='tcp://127.0.0.1:*' --osd.http=127.0.0.1:0 --osd.online=false \
  --osd.adaptive-k=false --osd.http-max-body-bytes=65536 --osd.http-timeout-s=2 2>"$log" &
pid=$!
trap 'kill $pid 2>/dev/null || true; rm -f "$log"' EXIT
for _ in $(seq 300); do grep -q "serving on" "$log" && break; sleep 0.1; done
endpoint=$(grep -o 'serving on tcp://[0-9.:]*' "$log" | awk '{print $3}')
base=$(grep -o 'HTTP on http://[0-9.:]*' "$log" | awk '{print $3}')
[ -n "$endpoint" ] && [ -n "$base" ] || { echo "server did not start:"; cat "$log"; exit 1; }
echo "osd-serve: ZeroMQ $endpoint, HTTP $base (node $(node --version))"
node "$src/tests/http/openai_client.mjs" "$modules" "$base" "$endpoint" "$build/osd-client"
kill -INT $pid
wait $pid
echo "http openai: ok"
