#!/usr/bin/env bash
# osd-client as a user runs it: list options never take the prompt (--dry-run shows the request),
# stray arguments are clear errors, Ctrl-C cancels the streaming request on its own connection and
# prints the finish reason, a second Ctrl-C quits at once, and a cancel from another connection
# cannot reach the request.
# Usage: client_cli.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build=$1
client=$build/osd-client
work=$(mktemp -d)
pid=
trap 'kill -CONT $pid 2>/dev/null || true; kill $pid 2>/dev/null || true; rm -rf "$work"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
field() { python3 -c "import json,sys; print(json.dumps(json.loads(sys.argv[1]).get(sys.argv[2])))" "$1" "$2"; }

# ---- arguments (no server) -------------------------------------------------------------------
req=$("$client" --dry-run --stop ")" "def fibonacci(")
[ "$(field "$req" prompt)" = '"def fibonacci("' ] || fail "--stop took the prompt: $req"
[ "$(field "$req" stop)" = '[")"]' ] || fail "stop: $req"
req=$("$client" --dry-run --stop ")" --stop "::" --eos 2,3 --eos 5 "x")
[ "$(field "$req" stop)" = '[")", "::"]' ] || fail "repeated --stop: $req"
[ "$(field "$req" eos)" = '[2, 3, 5]' ] || fail "--eos lists: $req"
[ "$(field "$req" prompt)" = '"x"' ] || fail "prompt after --eos: $req"
req=$("$client" --dry-run --tokens 1,2,3 --tokens 4)
[ "$(field "$req" tokens)" = '[1, 2, 3, 4]' ] || fail "--tokens lists: $req"
[ "$(field "$req" prompt)" = 'null' ] || fail "tokens and prompt: $req"
req=$("$client" --dry-run -- "--looks like an option")
[ "$(field "$req" prompt)" = '"--looks like an option"' ] || fail "prompt after --: $req"
# A stray word is named, with how to give several values; nothing is sent.
if "$client" --dry-run "p" --stop a b >"$work/out" 2>"$work/err"; then fail "a stray argument was accepted"; fi
grep -q "unexpected argument 'b'" "$work/err" || fail "stray argument: $(cat "$work/err")"
grep -q -- "--stop a --stop b" "$work/err" || fail "no hint: $(cat "$work/err")"
if "$client" --dry-run --tokens 1 2 3 2>"$work/err"; then fail "--tokens 1 2 3 was accepted"; fi
grep -q "tokens 1,2,3" "$work/err" || fail "--tokens hint: $(cat "$work/err")"
if "$client" --dry-run --bogus 2>"$work/err"; then fail "an unknown option was accepted"; fi
grep -q "unknown option --bogus" "$work/err" || fail "unknown option: $(cat "$work/err")"

# ---- against a server ------------------------------------------------------------------------
"$build/osd-serve" --osd.endpoint='tcp://127.0.0.1:*' --osd.max-batch=4 --osd.max-len=1024 --osd.max-new-tokens=1000 \
  2>"$work/serve.log" &
pid=$!
for _ in $(seq 300); do grep -q "serving on" "$work/serve.log" && break; sleep 0.1; done
endpoint=$(grep -o "serving on tcp://[0-9.:]*" "$work/serve.log" | awk "{print \$3}" || true)
[ -n "$endpoint" ] || { cat "$work/serve.log"; fail "server did not start"; }

# The prompt after --stop is the prompt: greedy text with the stop string is the text without it,
# cut before the stop string.
plain=$("$client" --endpoint "$endpoint" --max-new-tokens 24 --temperature 0 --no-stream --json "def fibonacci(" | tail -1)
stopped=$("$client" --endpoint "$endpoint" --stop "(" --max-new-tokens 24 --temperature 0 --no-stream --json "def fibonacci(" | tail -1)
python3 - "$plain" "$stopped" <<'EOF' || fail "stop string: $plain / $stopped"
import json, sys
plain, stopped = (json.loads(a) for a in sys.argv[1:])
assert plain["event"] == "done" and stopped["event"] == "done", (plain, stopped)
cut = plain["text"].split("(")[0]
assert stopped["text"] == cut, (stopped["text"], cut)
assert stopped["finish_reason"] == ("stop" if "(" in plain["text"] else plain["finish_reason"]), stopped
EOF

# Ctrl-C mid-stream: the client cancels on its connection and reports the finish reason. The
# server is paused while the client handles the signal, so the 1000-token request cannot finish
# before the cancel arrives.
"$client" --endpoint "$endpoint" --max-new-tokens 1000 --temperature 0 "def fibonacci(" >"$work/c.out" 2>"$work/c.err" &
cpid=$!
for _ in $(seq 600); do [ -s "$work/c.out" ] && break; sleep 0.05; done
[ -s "$work/c.out" ] || fail "no streamed text: $(cat "$work/c.err")"
kill -STOP $pid
kill -INT $cpid
for _ in $(seq 200); do grep -q "cancelling" "$work/c.err" && break; sleep 0.05; done
# Another connection cannot cancel it: ids are per connection.
"$client" --endpoint "$endpoint" --op cancel --id osd-client --timeout-ms 60000 2>"$work/other.err" >/dev/null &
other=$!
kill -CONT $pid
rc=0; wait $cpid || rc=$?
[ $rc -eq 130 ] || fail "Ctrl-C exit code $rc: $(cat "$work/c.err")"
grep -q "cancelling osd-client" "$work/c.err" || fail "no cancel message: $(cat "$work/c.err")"
grep -q "^finish: cancelled" "$work/c.err" || fail "no finish reason: $(cat "$work/c.err")"
orc=0; wait $other || orc=$?
[ $orc -eq 1 ] || fail "a cancel from another connection: exit $orc"
grep -q "unknown_id" "$work/other.err" || fail "other connection: $(cat "$work/other.err")"

# A second Ctrl-C quits at once, without waiting for the final reply (the server stays paused).
"$client" --endpoint "$endpoint" --max-new-tokens 1000 --temperature 0 "def fibonacci(" >"$work/c.out" 2>"$work/c.err" &
cpid=$!
for _ in $(seq 600); do [ -s "$work/c.out" ] && break; sleep 0.05; done
kill -STOP $pid
kill -INT $cpid
for _ in $(seq 200); do grep -q "cancelling" "$work/c.err" && break; sleep 0.05; done
kill -INT $cpid
rc=0; wait $cpid || rc=$?
kill -CONT $pid
[ $rc -eq 130 ] || fail "second Ctrl-C exit code $rc"
grep -q "interrupted again, quitting without the final reply" "$work/c.err" || fail "second Ctrl-C: $(cat "$work/c.err")"
! grep -q "^finish:" "$work/c.err" || fail "waited for the reply after a second Ctrl-C"

# The server still serves (the abandoned request was cancelled when its client vanished, or ran out).
"$client" --endpoint "$endpoint" --max-new-tokens 4 --temperature 0 "x" >/dev/null || fail "server stopped serving"
kill -INT $pid
wait $pid
pid=
echo "client cli: ok"
