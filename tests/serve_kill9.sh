#!/usr/bin/env bash
# kill -9 at any moment of online distillation never loses the last published draft: serve the
# default pair with a distiller that publishes (and saves) every few requests, kill -9 the server
# at random moments while it runs, restart it on the same state folder, and check each restart
# restores a version at least as new as the last one the old server saved and served.
# Usage: serve_kill9.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build=$1 src=$2
work=$(mktemp -d)
pid= load=
trap '[ -n "$pid" ] && kill -9 $pid 2>/dev/null; [ -n "$load" ] && kill $load 2>/dev/null; rm -rf "$work"' EXIT
port=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
endpoint=tcp://127.0.0.1:$port
state=$work/state
run=0

start_server() {
  run=$((run + 1))
  log=$work/serve.$run.log
  "$build/osd-serve" --osd.endpoint="$endpoint" --osd.online-state-dir="$state" --osd.max-batch=8 \
    --osd.online-guard-z=0 --osd.online-guard-margin=1.0 --osd.online-min-heldout=16 \
    --osd.online-min-new-records=64 >"$log" 2>&1 &
  pid=$!
  for _ in $(seq 600); do grep -q "serving on" "$log" && return; sleep 0.1; done
  echo "server did not start:"; cat "$log"; exit 1
}
verifier_version() {
  "$build/osd-client" --endpoint "$endpoint" --op stats --timeout-ms 20000 2>/dev/null |
    /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["stats"]["verifier"]["draft_version"])' || echo -1
}
last_saved() { { grep -o "saved version [0-9]*" "$1" || true; } | awk '{print $3}' | sort -n | tail -1; }

start_server
/usr/bin/python3 "$src/tests/load_client.py" "$endpoint" --concurrency 4 >/dev/null 2>&1 &
load=$!
for cycle in 1 2 3; do
  # The first kill waits for a published version; later ones come at a random moment of the
  # distiller's training (a publish and its save may be under way, or not).
  if [ $cycle = 1 ]; then
    for _ in $(seq 600); do
      v=$(verifier_version)
      [ "$v" -ge 1 ] && break
      sleep 0.2
    done
    [ "$v" -ge 1 ] || { echo "no version was published"; tail -20 "$log"; exit 1; }
  else
    sleep "$((2 + RANDOM % 4)).$((RANDOM % 10))"
  fi
  seen=$(verifier_version)
  kill -9 $pid
  wait $pid 2>/dev/null || true
  saved=$(last_saved "$log")
  start_server
  restored=$({ grep -o "restored draft version [0-9]*" "$log" || true; } | awk '{print $4}' | tail -1)
  echo "cycle $cycle: served version $seen, last save logged ${saved:-none}, restored ${restored:-none}"
  [ -n "$restored" ] || { echo "nothing restored"; cat "$log"; exit 1; }
  [ "$restored" -ge "$seen" ] || { echo "restored $restored < served $seen"; exit 1; }
  [ "$restored" -ge "${saved:-0}" ] || { echo "restored $restored < saved $saved"; exit 1; }
  if grep -q "restore_warning\|using the previous version" "$log"; then
    echo "cycle $cycle: the newest save was damaged and the previous one used:"; grep "previous version" "$log"
  fi
done
kill $load
load=
kill -TERM $pid
wait $pid
pid=
echo "serve kill -9: ok"
