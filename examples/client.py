#!/usr/bin/python3
"""A Python client for osd-serve (docs/PROTOCOL.md): streams one generation, then asks for the
server's statistics. Needs Debian's python3-zmq (run with /usr/bin/python3).

    /usr/bin/python3 examples/client.py "def fibonacci(" --endpoint tcp://127.0.0.1:5555
"""
import argparse
import json
import sys

import zmq


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("prompt")
    ap.add_argument("--endpoint", default="tcp://127.0.0.1:5555")
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--temperature", type=float, default=0.0)
    ap.add_argument("--timeout-ms", type=int, default=30000)
    args = ap.parse_args()

    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(args.endpoint)
    sock.send_string(json.dumps({"op": "generate", "id": "py-1", "prompt": args.prompt,
                                 "max_new_tokens": args.max_new_tokens,
                                 "temperature": args.temperature}))
    streamed = []
    while True:
        if not sock.poll(args.timeout_ms):
            print("no reply", file=sys.stderr)
            return 3
        ev = json.loads(sock.recv_string())
        if ev["event"] == "token":
            streamed.extend(ev["tokens"])
            sys.stdout.write(ev["text"])
            sys.stdout.flush()
        elif ev["event"] == "done":
            print()
            assert ev["tokens"] == streamed, "streamed tokens differ from the final reply"
            print(f"finish={ev['finish_reason']} tokens={len(ev['tokens'])} "
                  f"accepted={ev['stats']['num_accepted_tokens']}/{ev['stats']['num_draft_tokens']}")
            break
        elif ev["event"] == "error":
            print(f"error {ev['code']}: {ev['message']}", file=sys.stderr)
            return 1
    sock.send_string(json.dumps({"op": "stats"}))
    stats = json.loads(sock.recv_string())["stats"]["metrics"]
    finished = stats["requests_finished"]  # {finish reason: requests}
    print(f"server: {sum(finished.values())} requests finished {finished}, "
          f"acceptance={stats['acceptance_rate']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
