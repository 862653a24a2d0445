#!/usr/bin/env bash
# A dead verifier: every request in flight is answered "unavailable" (once), health says
# "failed", and osd-serve exits 3 so its supervisor restarts it.
# Usage: serve_supervision.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build=$1 src=$2
work=$(mktemp -d)
pid=
trap '[ -n "$pid" ] && kill -9 $pid 2>/dev/null; rm -rf "$work"' EXIT
OSD_INJECT_FAILURE=verifier@3000 "$build/osd-serve" --osd.endpoint='tcp://127.0.0.1:*' --osd.max-batch=4 \
  --osd.online=false >"$work/serve.log" 2>&1 &
pid=$!
for _ in $(seq 300); do grep -q "serving on" "$work/serve.log" && break; sleep 0.1; done
endpoint=$(grep -o 'serving on tcp://[0-9.:]*' "$work/serve.log" | awk '{print $3}')
[ -n "$endpoint" ] || { echo "server did not start:"; cat "$work/serve.log"; exit 1; }
/usr/bin/python3 "$src/tests/stream_client.py" "$endpoint" --requests 8 --max-new-tokens 500 \
  --quiet-ms 30000 >"$work/client.out"
set +e
wait $pid
rc=$?
set -e
pid=
summary=$(tail -1 "$work/client.out")
echo "after the verifier died: $summary (server exit $rc)"
[ "$rc" = 3 ] || { echo "osd-serve exited $rc, not 3"; cat "$work/serve.log"; exit 1; }
echo "$summary" | /usr/bin/python3 -c '
import json, sys
s = json.load(sys.stdin)
bad = {r: f for r, f in s["finals"].items() if len(f) != 1 or f[0] not in ("unavailable", "length")}
sys.exit("requests without exactly one final reply: %s" % bad if bad else 0)'
grep -q "unavailable" <<<"$summary" || { echo "no request was answered unavailable"; exit 1; }
grep -q "cannot serve" "$work/serve.log" || { echo "no log line"; cat "$work/serve.log"; exit 1; }
echo "serve supervision: ok"
