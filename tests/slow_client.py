#!/usr/bin/python3
"""A client that never reads: starts many streaming requests on one DEALER socket with the
smallest receive buffers and reads nothing, while a second client asks for health once a second
and must be answered within --patience-ms every time (a test helper). Exits 0 when every probe
was answered, 1 otherwise; prints one line per probe.

    /usr/bin/python3 tests/slow_client.py ENDPOINT [--requests 250] [--probes 12]
"""
import argparse
import json
import sys
import time

import zmq


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("endpoint")
    ap.add_argument("--requests", type=int, default=250)
    ap.add_argument("--max-new-tokens", type=int, default=120)
    ap.add_argument("--probes", type=int, default=12)
    ap.add_argument("--patience-ms", type=int, default=10000)
    args = ap.parse_args()
    ctx = zmq.Context()
    silent = ctx.socket(zmq.DEALER)
    silent.setsockopt(zmq.LINGER, 0)
    silent.setsockopt(zmq.RCVHWM, 1)
    silent.setsockopt(zmq.RCVBUF, 1024)
    silent.connect(args.endpoint)
    for i in range(args.requests):
        silent.send_string(json.dumps({"op": "generate", "id": f"s{i}", "tokens": [1 + i % 200, 2, 3],
                                       "max_new_tokens": args.max_new_tokens, "temperature": 0}))
    probe = ctx.socket(zmq.DEALER)
    probe.setsockopt(zmq.LINGER, 0)
    probe.connect(args.endpoint)
    ok = True
    for k in range(args.probes):
        t = time.time()
        probe.send_string(json.dumps({"op": "health"}))
        answered = probe.poll(args.patience_ms)
        print(f"probe {k}: {'answered' if answered else 'NO REPLY'} in {time.time() - t:.3f} s", flush=True)
        if not answered:
            ok = False
            break
        probe.recv()
        time.sleep(1)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
