#!/usr/bin/python3
"""A test client for osd-serve (docs/PROTOCOL.md): starts N streaming requests on one DEALER
socket, prints "streaming" once every request has had a token event, and then collects replies
until every request has had its final reply or the server went quiet. Prints one JSON summary
line: per request its final replies (done / error) and the finish reasons.

    /usr/bin/python3 tests/stream_client.py ENDPOINT --requests 4 --max-new-tokens 200
"""
import argparse
import json
import sys

import zmq


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("endpoint")
    ap.add_argument("--requests", type=int, default=4)
    ap.add_argument("--max-new-tokens", type=int, default=200)
    ap.add_argument("--quiet-ms", type=int, default=60000, help="give up after this long without a reply")
    args = ap.parse_args()
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(args.endpoint)
    ids = [f"r{i}" for i in range(args.requests)]
    for i, rid in enumerate(ids):
        sock.send_string(json.dumps({"op": "generate", "id": rid, "prompt": f"def f{i}(x):",
                                     "max_new_tokens": args.max_new_tokens, "temperature": 0}))
    streamed = {rid: 0 for rid in ids}
    finals = {rid: [] for rid in ids}
    announced = False
    while True:
        if not sock.poll(args.quiet_ms):
            break
        ev = json.loads(sock.recv_string())
        rid = ev.get("id")
        if rid not in finals:
            continue
        if ev["event"] == "token":
            streamed[rid] += len(ev["tokens"])
        elif ev["event"] in ("done", "error"):
            finals[rid].append(ev.get("finish_reason") or ev.get("code"))
        if not announced and all(streamed[r] > 0 or finals[r] for r in ids):
            print("streaming", flush=True)
            announced = True
        if all(finals[r] for r in ids):
            # Wait a little for duplicates: nothing may follow a final reply.
            if sock.poll(500):
                continue
            break
    print(json.dumps({"finals": finals, "streamed": streamed}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
