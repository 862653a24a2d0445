#!/usr/bin/python3
"""Soak test of osd-serve: many clients, every kind of bad behaviour at once, and one kill -9 +
restart of the server halfway. Not a timed test: it reports what happened and checks the goals.

    /usr/bin/python3 scripts/soak.py --build build --requests 10000 --clients 64 --out DIR

Clients (one DEALER socket each, one request at a time) mix: normal streaming requests, cancels
after the first token, disconnects mid-stream, slow readers, and bad input (malformed JSON,
wrong types, multipart messages, frames over osd.max-frame-bytes and over 16x it, ids over the
limit, prompts that overflow the context). The server runs the default models with online
distillation publishing into a state folder. Halfway, the server is killed with SIGKILL and
restarted on the same endpoint and state folder.

Reported (and written to DIR/soak.json): requests sent, answered exactly once, lost, duplicated
(among requests not in flight at the kill), the ones in flight at the kill, RSS over time per
server run and its growth after warm-up, p50/p99 latency, draft versions published before the
kill and restored after it. Exit status 1 when a goal is missed: nothing lost or duplicated,
the newest published draft restored, RSS growth after warm-up under --max-rss-growth (full runs).
Needs Debian's python3-zmq (run with /usr/bin/python3).
"""
import argparse
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

import zmq

PROMPTS = [
    "def fibonacci(n):", "import numpy as np\n", "for (int i = 0; i < n; ++i) {", "#include <stdio.h>\n",
    "In the beginning", "And it came to pass", "class Stack:\n    def __init__(self):", "static int count = 0;",
    "The quick brown fox", "def quicksort(xs):", "while (1) {", "Blessed are the",
]
FINAL_EVENTS = ("done", "error")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def rss_kb(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


class Server:
    """One osd-serve process at a time on a fixed endpoint; its output goes to a log file."""

    def __init__(self, args, endpoint, log_path):
        self.args, self.endpoint, self.log_path = args, endpoint, log_path
        self.proc = None
        self.run = 0

    def start(self):
        self.run += 1
        log = open(f"{self.log_path}.{self.run}", "w")
        cmd = [os.path.join(self.args.build, "osd-serve"), f"--osd.endpoint={self.endpoint}",
               f"--osd.online-state-dir={self.args.state_dir}", "--osd.max-frame-bytes=65536"]
        cmd += self.args.server_arg
        self.cmd = cmd
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.time() + 600
        while time.time() < deadline:
            if self.proc.poll() is not None:
                sys.exit(f"osd-serve exited {self.proc.returncode} at start; log {log.name}")
            with open(log.name) as f:
                if "serving on" in f.read():
                    return
            time.sleep(0.2)
        sys.exit("osd-serve did not start within 10 minutes")

    def log_text(self, run=None):
        with open(f"{self.log_path}.{run or self.run}") as f:
            return f.read()

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=300)


def ask(endpoint, op, timeout_ms=60000):
    ctx = zmq.Context.instance()
    s = ctx.socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    s.connect(endpoint)
    s.send_string(json.dumps({"op": op}))
    try:
        if not s.poll(timeout_ms):
            return None
        return json.loads(s.recv_string())
    finally:
        s.close()


class Ledger:
    """Every request's fate, shared by the client threads."""

    def __init__(self):
        self.lock = threading.Lock()
        self.sent = 0
        self.finals = {}          # id -> number of final replies
        self.kind = {}            # id -> behaviour
        self.expect_final = {}    # id -> whether a final reply is owed
        self.in_flight_at_kill = set()
        self.latency_ms = []
        self.outcomes = {}        # behaviour -> {finish or code: count}
        self.strays = 0           # replies for ids no client sent
        self.completed = 0        # requests whose client moved on

    def outcome(self, kind, what):
        with self.lock:
            d = self.outcomes.setdefault(kind, {})
            d[what] = d.get(what, 0) + 1


class Client(threading.Thread):
    def __init__(self, n, args, endpoint, ledger, state):
        super().__init__(daemon=True)
        self.n, self.args, self.endpoint, self.ledger, self.state = n, args, endpoint, ledger, state
        self.rng = random.Random(args.seed * 1000 + n)
        self.sock = None
        self.seq = 0

    def connect(self):
        if self.sock is not None:
            self.sock.close()
        self.sock = zmq.Context.instance().socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.connect(self.endpoint)

    def next_id(self):
        self.seq += 1
        return f"c{self.n}-{self.seq}"

    def take(self):
        with self.ledger.lock:
            if self.state["issued"] >= self.args.requests:
                return False
            self.state["issued"] += 1
            return True

    def record_sent(self, rid, kind, expect_final):
        with self.ledger.lock:
            self.ledger.sent += 1
            self.ledger.finals[rid] = 0
            self.ledger.kind[rid] = kind
            self.ledger.expect_final[rid] = expect_final
            self.ledger.in_flight[rid] = self.state["epoch"]

    def finish(self, rid):
        with self.ledger.lock:
            self.ledger.in_flight.pop(rid, None)
            self.ledger.completed += 1

    def wait_final(self, rid, slow=False, cancel_after_first=False, latency=False):
        """Reads until rid's final reply; returns (event or None, first-token seen). A request
        the killed server had gets no reply: waiting ends 20 s after the restart."""
        start = time.time()
        first = False
        epoch = self.state["epoch"]
        deadline = time.time() + self.args.reply_timeout
        while time.time() < deadline:
            if self.state["epoch"] != epoch and self.state.get("restarted_at") and \
                    time.time() > self.state["restarted_at"] + 20:
                break
            if not self.sock.poll(200):
                continue
            ev = json.loads(self.sock.recv_string())
            eid = ev.get("id")
            if eid != rid:
                with self.ledger.lock:
                    if eid in self.ledger.finals and ev.get("event") in FINAL_EVENTS:
                        self.ledger.finals[eid] += 1  # a late final of an earlier request
                    elif eid not in self.ledger.finals and ev.get("event") in FINAL_EVENTS:
                        self.ledger.strays += 1
                continue
            if ev["event"] == "token":
                if not first and cancel_after_first:
                    self.sock.send_string(json.dumps({"op": "cancel", "id": rid}))
                first = True
                if slow:
                    time.sleep(self.rng.uniform(0.005, 0.03))
                continue
            if ev["event"] == "cancel_ack":
                continue
            if ev["event"] in FINAL_EVENTS:
                with self.ledger.lock:
                    self.ledger.finals[rid] += 1
                if ev["event"] == "done" and latency:
                    with self.ledger.lock:
                        self.ledger.latency_ms.append((time.time() - start) * 1000)
                # Anything else for this id would be a duplicate: catch it in the next reads.
                return ev, first
        with self.ledger.lock:
            if self.state["epoch"] != epoch:
                self.ledger.in_flight_at_kill.add(rid)
        return None, first

    def generate(self, rid, prompt, max_new, stream=True):
        self.sock.send_string(json.dumps({"op": "generate", "id": rid, "prompt": prompt, "max_new_tokens": max_new,
                                          "temperature": self.rng.choice([0, 0.7, 1.0]),
                                          "seed": self.rng.randrange(1 << 30), "stream": stream}))

    def run(self):
        self.connect()
        a = self.args
        while self.take():
            r = self.rng.random()
            rid = self.next_id()
            prompt = self.rng.choice(PROMPTS)
            max_new = self.rng.randint(8, a.max_new_tokens)
            if r < a.p_cancel:
                kind = "cancel"
                self.record_sent(rid, kind, True)
                self.generate(rid, prompt, max(max_new, 32))
                ev, _ = self.wait_final(rid, cancel_after_first=True)
            elif r < a.p_cancel + a.p_disconnect:
                kind = "disconnect"
                self.record_sent(rid, kind, False)  # the client leaves: no reply owed
                self.generate(rid, prompt, max(max_new, 32))
                if self.sock.poll(int(a.reply_timeout * 1000)):
                    self.sock.recv_string()
                self.connect()  # a new socket: the old one (and its replies) are gone
                ev = None
            elif r < a.p_cancel + a.p_disconnect + a.p_slow:
                kind = "slow"
                self.record_sent(rid, kind, True)
                self.generate(rid, prompt, max_new)
                ev, _ = self.wait_final(rid, slow=True)
            elif r < a.p_cancel + a.p_disconnect + a.p_slow + a.p_bad:
                kind, ev = self.bad(rid)
            else:
                kind = "normal"
                self.record_sent(rid, kind, True)
                self.generate(rid, prompt, max_new)
                ev, _ = self.wait_final(rid, latency=True)
            if ev is not None:
                self.ledger.outcome(kind, ev.get("finish_reason") or ev.get("code"))
            elif kind != "disconnect" and kind != "huge_frame":
                self.ledger.outcome(kind, "no reply")
            self.finish(rid)
        # Late replies: anything still arriving is a duplicate or stray.
        end = time.time() + 1.0
        while time.time() < end:
            if self.sock.poll(100):
                ev = json.loads(self.sock.recv_string())
                with self.ledger.lock:
                    eid = ev.get("id")
                    if ev.get("event") in FINAL_EVENTS:
                        if eid in self.ledger.finals:
                            self.ledger.finals[eid] += 1
                        else:
                            self.ledger.strays += 1
        self.sock.close()

    def bad(self, rid):
        """One hostile request; returns (kind, final event or None)."""
        which = self.rng.choice(["malformed", "types", "multipart", "oversize", "huge_frame", "long_id",
                                 "context"])
        if which == "huge_frame":
            # Over 16x max-frame-bytes: ZeroMQ drops the connection before buffering it; no reply.
            self.record_sent(rid, which, False)
            self.sock.send(b"x" * (65536 * 16 + 1))
            time.sleep(0.05)
            self.connect()
            return which, None
        if which == "malformed":
            self.sock.send(b'{"op": "generate", "id": "' + rid.encode() + b'", "prompt": ')
            expect_id = None
        elif which == "types":
            self.sock.send_string(json.dumps({"op": "generate", "id": rid, "prompt": 5, "max_new_tokens": "x"}))
            expect_id = rid
        elif which == "multipart":
            self.sock.send_multipart([b'{"op": "health"}', b"garbage"])
            expect_id = None
        elif which == "oversize":
            self.sock.send_string(json.dumps({"op": "generate", "id": rid, "prompt": "a" * 70000}))
            expect_id = None
        elif which == "long_id":
            self.sock.send_string(json.dumps({"op": "generate", "id": "L" * 300, "prompt": "x"}))
            expect_id = None
        else:  # context: prompt + max_new_tokens beyond the context
            self.sock.send_string(json.dumps({"op": "generate", "id": rid, "prompt": "word " * 150,
                                              "max_new_tokens": 512}))
            expect_id = rid
        self.record_sent(rid, which, True)
        deadline = time.time() + self.args.reply_timeout
        while time.time() < deadline:
            if not self.sock.poll(200):
                continue
            ev = json.loads(self.sock.recv_string())
            if ev.get("event") == "error" and ev.get("id") == expect_id:
                with self.ledger.lock:
                    self.ledger.finals[rid] += 1
                return which, ev
        return which, None


def percentile(xs, q):
    if not xs:
        return None
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build", default="build")
    ap.add_argument("--requests", type=int, default=10000)
    ap.add_argument("--clients", type=int, default=64)
    ap.add_argument("--max-new-tokens", type=int, default=48)
    ap.add_argument("--time-limit", type=float, default=0, help="stop issuing requests after this many seconds")
    ap.add_argument("--out", default="soak-out")
    ap.add_argument("--state-dir", default=None)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--reply-timeout", type=float, default=120.0)
    ap.add_argument("--p-cancel", type=float, default=0.08)
    ap.add_argument("--p-disconnect", type=float, default=0.04)
    ap.add_argument("--p-slow", type=float, default=0.08)
    ap.add_argument("--p-bad", type=float, default=0.10)
    ap.add_argument("--no-kill", action="store_true")
    ap.add_argument("--max-rss-growth", type=float, default=0.10, help="goal; checked when --check-rss")
    ap.add_argument("--check-rss", action="store_true")
    ap.add_argument("--server-arg", action="append", default=[],
                    help="extra osd-serve argument (repeatable)")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    args.state_dir = args.state_dir or os.path.join(args.out, "state")
    shutil.rmtree(args.state_dir, ignore_errors=True)  # a fresh draft: versions start at 0
    if not args.server_arg:
        # The distiller publishes often (a loose guard), so a kill meets fresh versions; its buffer
        # (bounded by its budget) is 8 MiB, so it is full after warm-up and RSS growth then means
        # a leak, not a buffer still filling.
        args.server_arg = ["--osd.online-guard-z=0", "--osd.online-guard-margin=1.0", "--osd.online-min-heldout=16",
                           "--osd.online-min-new-records=64", "--osd.online-buffer-bytes=8388608"]
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    server = Server(args, endpoint, os.path.join(args.out, "osd-serve.log"))
    t0 = time.time()
    server.start()
    ledger = Ledger()
    ledger.in_flight = {}
    state = {"issued": 0, "epoch": 0}
    rss = []  # (seconds since start, run, kB)
    stop_sampling = threading.Event()

    def sample():
        while not stop_sampling.is_set():
            kb = rss_kb(server.proc.pid)
            if kb:
                rss.append((round(time.time() - t0, 1), server.run, kb))
            stop_sampling.wait(1.0)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    clients = [Client(i, args, endpoint, ledger, state) for i in range(args.clients)]
    for c in clients:
        c.start()
    kill = {}
    killed = args.no_kill
    while any(c.is_alive() for c in clients):
        time.sleep(0.5)
        if args.time_limit and time.time() - t0 > args.time_limit:
            with ledger.lock:
                args.requests = state["issued"]  # issue no more
        if not killed and ledger.completed >= args.requests // 2:
            killed = True
            st = ask(endpoint, "stats")
            before = st["stats"] if st else {}
            with ledger.lock:
                in_flight = dict(ledger.in_flight)
            server.kill9()
            with ledger.lock:
                state["epoch"] += 1
                ledger.in_flight_at_kill.update(in_flight)
            log1 = server.log_text()
            saved = [int(v) for v in re.findall(r"saved version (\d+)", log1)]
            kill = {"at_s": round(time.time() - t0, 1), "completed": ledger.completed,
                    "in_flight": len(in_flight),
                    "verifier_version_seen": before.get("verifier", {}).get("draft_version"),
                    "distiller_version_seen": (before.get("distiller") or {}).get("version"),
                    "last_saved_logged": max(saved) if saved else None}
            server.start()
            state["restarted_at"] = time.time()
            log2 = server.log_text()
            m = re.findall(r"restored draft version (\d+)", log2)
            kill["restored_version"] = int(m[-1]) if m else None
            st = ask(endpoint, "stats")
            kill["verifier_version_after_restart"] = st["stats"]["verifier"]["draft_version"] if st else None
            kill["restart_s"] = round(time.time() - t0 - kill["at_s"], 1)
            print(f"soak: kill -9 at {kill['at_s']} s after {kill['completed']} requests: {kill}", flush=True)
    for c in clients:
        c.join()
    final_stats = ask(endpoint, "stats")
    stop_sampling.set()
    sampler.join()
    rc = server.stop()
    duration = time.time() - t0

    with ledger.lock:
        owed = [r for r, e in ledger.expect_final.items() if e]
        at_kill = ledger.in_flight_at_kill
        judged = [r for r in owed if r not in at_kill]
        once = sum(1 for r in judged if ledger.finals[r] == 1)
        lost = [r for r in judged if ledger.finals[r] == 0]
        duplicated = [r for r in ledger.finals if ledger.finals[r] > 1]
    runs = {}
    for t, run, kb in rss:
        runs.setdefault(run, []).append((t, kb))
    rss_report = {}
    for run, pts in runs.items():
        n = len(pts)
        warm = pts[n // 5:]  # after warm-up: the first fifth of each run's samples
        if len(warm) >= 4:
            k = max(1, len(warm) // 10)
            start = sum(kb for _, kb in warm[:k]) / k
            end = sum(kb for _, kb in warm[-k:]) / k
            rss_report[run] = {"samples": n, "after_warmup_kb": round(start), "end_kb": round(end),
                               "peak_kb": max(kb for _, kb in pts), "growth": round(end / start - 1, 4)}
        else:
            rss_report[run] = {"samples": n, "peak_kb": max(kb for _, kb in pts) if pts else None}
    versions = {}
    if final_stats:
        s = final_stats["stats"]
        versions = {"verifier_version_end": s["verifier"]["draft_version"],
                    "distiller_end": s.get("distiller"), "server": s.get("server")}
    report = {
        "command": " ".join([sys.executable] + sys.argv),
        "server_command": " ".join(server.cmd),
        "requests_sent": ledger.sent, "clients": args.clients, "duration_s": round(duration, 1),
        "answered_exactly_once": once, "owed_a_final_reply": len(owed),
        "in_flight_at_kill": len(at_kill), "lost": len(lost), "duplicated": len(duplicated),
        "stray_replies": ledger.strays, "lost_ids": lost[:20], "duplicated_ids": duplicated[:20],
        "latency_ms_normal_requests": {"p50": percentile(ledger.latency_ms, 0.5), "p99": percentile(ledger.latency_ms, 0.99),
                       "n": len(ledger.latency_ms)},
        "outcomes": ledger.outcomes, "kill": kill, "rss": rss_report, "versions": versions,
        "server_exit": rc,
    }
    with open(os.path.join(args.out, "soak.json"), "w") as f:
        json.dump(report, f, indent=1)
    with open(os.path.join(args.out, "rss.tsv"), "w") as f:
        f.write("seconds\trun\trss_kb\n")
        for t, run, kb in rss:
            f.write(f"{t}\t{run}\t{kb}\n")
    print(json.dumps({k: v for k, v in report.items() if k not in ("lost_ids", "duplicated_ids")}, indent=1))
    problems = []
    if lost:
        problems.append(f"{len(lost)} requests lost")
    if duplicated:
        problems.append(f"{len(duplicated)} requests answered more than once")
    if ledger.strays:
        problems.append(f"{ledger.strays} replies for ids never sent")
    if kill and kill.get("verifier_version_seen") is not None:
        restored = kill.get("restored_version") or 0
        if restored < kill["verifier_version_seen"] or restored < (kill.get("last_saved_logged") or 0):
            problems.append(f"restored draft version {restored} is older than the newest published "
                            f"({kill['verifier_version_seen']}) or saved ({kill.get('last_saved_logged')})")
    if rc != 0:
        problems.append(f"osd-serve exited {rc} after SIGTERM")
    if args.check_rss:
        for run, r in rss_report.items():
            if "growth" in r and r["growth"] > args.max_rss_growth:
                problems.append(f"server run {run}: RSS grew {r['growth']:.1%} after warm-up")
    if problems:
        print("soak: FAILED: " + "; ".join(problems))
        return 1
    print("soak: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
