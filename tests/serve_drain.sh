#!/usr/bin/env bash
# Draining osd-serve: SIGTERM with streaming requests in flight lets them finish and answers
# each exactly once, then the server exits 0; a second SIGTERM exits at once.
# Usage: serve_drain.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build=$1 src=$2
work=$(mktemp -d)
pid=
trap '[ -n "$pid" ] && kill -9 $pid 2>/dev/null; rm -rf "$work"' EXIT

start_server() {  # extra osd keys as arguments
  "$build/osd-serve" --osd.endpoint='tcp://127.0.0.1:*' --osd.max-batch=4 --osd.online=false "$@" \
    2>"$work/serve.log" &
  pid=$!
  for _ in $(seq 300); do grep -q "serving on" "$work/serve.log" && break; sleep 0.1; done
  endpoint=$(grep -o 'serving on tcp://[0-9.:]*' "$work/serve.log" | awk '{print $3}')
  [ -n "$endpoint" ] || { echo "server did not start:"; cat "$work/serve.log"; exit 1; }
}

# 1. One SIGTERM: the four streaming requests run to their end (length), each gets one reply.
start_server
/usr/bin/python3 "$src/tests/stream_client.py" "$endpoint" --requests 4 --max-new-tokens 48 \
  >"$work/client.out" &
client=$!
for _ in $(seq 600); do grep -q streaming "$work/client.out" && break; sleep 0.05; done
grep -q streaming "$work/client.out" || { echo "no tokens streamed"; cat "$work/serve.log"; exit 1; }
kill -TERM $pid
set +e
wait $pid
rc=$?
set -e
pid=
wait $client
summary=$(tail -1 "$work/client.out")
echo "after SIGTERM: $summary (server exit $rc)"
[ "$rc" = 0 ] || { echo "server exited $rc after SIGTERM"; cat "$work/serve.log"; exit 1; }
echo "$summary" | /usr/bin/python3 -c '
import json, sys
s = json.load(sys.stdin)
bad = {r: f for r, f in s["finals"].items() if f != ["length"]}
sys.exit("requests without exactly one final reply (length): %s" % bad if bad else 0)'

# 2. The drain deadline: requests that cannot finish in time are cancelled, each with one final
#    reply, and the server still exits 0.
start_server --osd.drain-timeout-ms=300
/usr/bin/python3 "$src/tests/stream_client.py" "$endpoint" --requests 4 --max-new-tokens 500 \
  >"$work/client.out" &
client=$!
for _ in $(seq 600); do grep -q streaming "$work/client.out" && break; sleep 0.05; done
kill -TERM $pid
set +e
wait $pid
rc=$?
set -e
pid=
wait $client
summary=$(tail -1 "$work/client.out")
echo "after SIGTERM with a 300 ms deadline: $summary (server exit $rc)"
[ "$rc" = 0 ] || { echo "server exited $rc"; cat "$work/serve.log"; exit 1; }
echo "$summary" | /usr/bin/python3 -c '
import json, sys
s = json.load(sys.stdin)
bad = {r: f for r, f in s["finals"].items() if len(f) != 1 or f[0] not in ("cancelled", "length")}
sys.exit("requests without exactly one final reply: %s" % bad if bad else 0)'
grep -q "cancelled" <<<"$summary" || { echo "nothing was cancelled at the deadline"; exit 1; }

# 3. A second SIGTERM exits at once, without waiting for the drain.
start_server --osd.drain-timeout-ms=600000
/usr/bin/python3 "$src/tests/stream_client.py" "$endpoint" --requests 4 --max-new-tokens 500 \
  --quiet-ms 5000 >"$work/client.out" &
client=$!
for _ in $(seq 600); do grep -q streaming "$work/client.out" && break; sleep 0.05; done
kill -TERM $pid
sleep 0.5
kill -TERM $pid
for _ in $(seq 200); do kill -0 $pid 2>/dev/null || break; sleep 0.1; done
if kill -0 $pid 2>/dev/null; then echo "a second SIGTERM did not stop the server"; exit 1; fi
set +e
wait $pid
rc=$?
set -e
pid=
wait $client || true
[ "$rc" != 0 ] || { echo "an interrupted drain exited 0"; exit 1; }
grep -q "second signal" "$work/serve.log" || { echo "no log line for the second signal"; cat "$work/serve.log"; exit 1; }
echo "serve drain: ok"
