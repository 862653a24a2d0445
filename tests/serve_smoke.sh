#!/usr/bin/env bash
# osd-serve end to end as a user runs it: start the server on a free port, stream a reply with
# osd-client and with the Python client, check an error reply, stop it with SIGINT.
# Usage: serve_smoke.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build=$1 src=$2
log=$(mktemp)
"$build/osd-serve" --osd.endpoint='tcp://127.0.0.1:*' --osd.max-batch=4 --osd.max-len=128 2>"$log" &
pid=$!
trap 'kill $pid 2>/dev/null || true; rm -f "$log"' EXIT
for _ in $(seq 100); do grep -q "serving on" "$log" && break; sleep 0.1; done
endpoint=$(grep -o 'serving on tcp://[0-9.:]*' "$log" | awk '{print $3}')
[ -n "$endpoint" ] || { echo "server did not start:"; cat "$log"; exit 1; }
out=$("$build/osd-client" --endpoint "$endpoint" --max-new-tokens 12 --temperature 0 --json "def fibonacci(")
echo "$out" | tail -1 | grep -q '"event":"done"' || { echo "no done event: $out"; exit 1; }
echo "$out" | tail -1 | grep -q '"finish_reason":"length"' || { echo "bad finish: $out"; exit 1; }
if "$build/osd-client" --endpoint "$endpoint" --top-p 2 "x" 2>/tmp/osd-smoke-err; then
  echo "an invalid request succeeded"; exit 1
fi
grep -q "invalid_request" /tmp/osd-smoke-err || { echo "no invalid_request error"; cat /tmp/osd-smoke-err; exit 1; }
/usr/bin/python3 "$src/examples/client.py" --endpoint "$endpoint" --max-new-tokens 8 "hello" | tee /tmp/osd-smoke-py
grep -q "finish=length tokens=8" /tmp/osd-smoke-py || { echo "python client failed"; exit 1; }
"$build/osd-client" --endpoint "$endpoint" --op health | grep -q '"status": "ok"'
kill -INT $pid
wait $pid
echo "serve smoke: ok"
