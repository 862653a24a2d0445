#!/usr/bin/env bash
# The ZeroMQ client examples against a real osd-serve (default models, free port):
#   cpp     examples/zmq_client.cpp: streams a greedy reply whose streamed tokens equal the final
#           ones, and cancels a long request (cancel_ack, then done with finish_reason cancelled).
#   python  examples/client.py: streams the same greedy reply, token for token the C++ client's
#           text. Needs Debian's python3-zmq: without it the test exits 77 (CTest: skipped).
# Usage: examples_clients.sh BUILD_DIR SOURCE_DIR cpp|python
set -euo pipefail
build=$1 src=$2 which=$3
prompt="def fibonacci("
if [ "$which" = python ] && ! /usr/bin/python3 -c "import zmq" 2>/dev/null; then
  echo "SKIP: /usr/bin/python3 cannot import zmq (install python3-zmq, scripts/install-deps.sh)"
  exit 77
fi
work=$(mktemp -d)
pid=
trap '[ -n "$pid" ] && kill $pid 2>/dev/null; rm -rf "$work"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

"$build/osd-serve" --osd.endpoint='tcp://127.0.0.1:*' --osd.max-batch=4 2>"$work/serve.log" &
pid=$!
for _ in $(seq 300); do grep -q "serving on" "$work/serve.log" && break; sleep 0.1; done
endpoint=$(grep -o 'serving on tcp://[0-9.:]*' "$work/serve.log" | awk '{print $3}')
[ -n "$endpoint" ] || { cat "$work/serve.log"; fail "server did not start"; }

# The C++ client (both tests: its greedy text is the Python client's reference).
"$build/osd-example-zmq-client" "$endpoint" "$prompt" >"$work/cpp.out" 2>&1 || { cat "$work/cpp.out"; fail "C++ client failed"; }
cpp=$(cat "$work/cpp.out")
echo "$cpp"
grep -q "^finish=length tokens=16 route=default" "$work/cpp.out" || fail "C++ client: no 16-token reply"
grep -q "^cancel acknowledged$" "$work/cpp.out" || fail "C++ client: no cancel_ack"
grep -q "^cancelled request: finish=cancelled" "$work/cpp.out" || fail "C++ client: not cancelled"
[ "$(tail -1 "$work/cpp.out")" = ok ] || fail "C++ client did not end with ok"

if [ "$which" = python ]; then
  /usr/bin/python3 "$src/examples/client.py" --endpoint "$endpoint" --max-new-tokens 16 "$prompt" \
    >"$work/py.out" 2>&1 || { cat "$work/py.out"; fail "Python client failed"; }
  py=$(cat "$work/py.out")
  echo "$py"
  grep -q "^finish=length tokens=16 " "$work/py.out" || fail "Python client: no 16-token reply"
  # The server counted the C++ client's two requests and this one.
  grep -q "^server: 3 requests finished " "$work/py.out" || fail "Python client: wrong server stats"
  # Greedy decoding is deterministic: both clients streamed the same text.
  [ "${py%%$'\n'finish=*}" = "${cpp%%$'\n'finish=*}" ] || fail "the clients' texts differ"
fi

kill -INT $pid
wait $pid || fail "osd-serve exited with $?"
pid=
echo "examples_clients $which: ok"
