#!/usr/bin/env bash
# A client that never reads must not block osd-serve's I/O thread: another client's health
# requests are answered throughout, the silent client is dropped (its requests cancelled, the
# server says so in its stats), and the server keeps serving.
# Usage: serve_slow_client.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build=$1 src=$2
work=$(mktemp -d)
pid=
trap '[ -n "$pid" ] && kill -9 $pid 2>/dev/null; rm -rf "$work"' EXIT
# Tiny random models, one draft token per round: many small replies, fast.
"$build/osd-serve" --osd.endpoint='tcp://127.0.0.1:*' --osd.target=tiny --osd.draft=tiny-draft \
  --osd.tokenizer=bytes --osd.online=false --osd.adaptive-k=false --osd.k=1 --osd.max-len=256 \
  --osd.max-batch=16 >"$work/serve.log" 2>&1 &
pid=$!
for _ in $(seq 300); do grep -q "serving on" "$work/serve.log" && break; sleep 0.1; done
endpoint=$(grep -o 'serving on tcp://[0-9.:]*' "$work/serve.log" | awk '{print $3}')
[ -n "$endpoint" ] || { echo "server did not start:"; cat "$work/serve.log"; exit 1; }
/usr/bin/python3 "$src/tests/slow_client.py" "$endpoint" --requests 250 --probes 12 ||
  { echo "the I/O thread stopped answering while a client did not read"; exit 1; }
stats=$("$build/osd-client" --endpoint "$endpoint" --op stats --timeout-ms 20000)
dropped=$(echo "$stats" | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["stats"]["server"]["clients_dropped"])')
echo "clients dropped: $dropped"
[ "$dropped" -ge 1 ] || { echo "the silent client was not dropped"; exit 1; }
grep -q "replies unread" "$work/serve.log" || { echo "no log line for the dropped client"; exit 1; }
"$build/osd-client" --endpoint "$endpoint" --tokens 1,2,3 --max-new-tokens 8 --temperature 0 >/dev/null
kill -TERM $pid
wait $pid
pid=
echo "serve slow client: ok"
