#!/usr/bin/python3
"""Keeps N streaming requests in flight against osd-serve until killed (a test helper), through
server restarts: a request without a reply for 10 s is given up and another one sent.

    /usr/bin/python3 tests/load_client.py ENDPOINT [--concurrency 4]
"""
import argparse
import json
import random
import time

import zmq

PROMPTS = ["def fibonacci(n):", "for (int i = 0; i < n; ++i) {", "In the beginning", "import os\n"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("endpoint")
    ap.add_argument("--concurrency", type=int, default=4)
    args = ap.parse_args()
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(args.endpoint)
    rng = random.Random(7)
    n = 0
    pending = {}  # id -> last activity

    def send():
        nonlocal n
        n += 1
        rid = f"l{n}"
        sock.send_string(json.dumps({"op": "generate", "id": rid, "prompt": rng.choice(PROMPTS),
                                     "max_new_tokens": 32, "temperature": 0.8, "seed": n}))
        pending[rid] = time.time()

    while True:
        while len(pending) < args.concurrency:
            send()
        if sock.poll(200):
            ev = json.loads(sock.recv_string())
            rid = ev.get("id")
            if rid in pending:
                pending[rid] = time.time()
                if ev["event"] in ("done", "error"):
                    del pending[rid]
        for rid, t in list(pending.items()):
            if time.time() - t > 10:
                del pending[rid]


if __name__ == "__main__":
    main()
