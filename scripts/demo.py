#!/usr/bin/python3
"""osd's main-job demo: a server whose draft learns while it serves.

Starts three osd-serve processes on the default pair, as users run them (ZeroMQ, docs/PROTOCOL.md):
  online   the draft distils from the target while serving (osd.online = true)
  static   the same draft, frozen (osd.online = false)
  target   target-only decoding (osd.draft = none), the baseline for speedups
then replays a workload whose domain shifts (python -> c -> english by default; the default draft
was trained on python only) to `online` and `static` alike, showing live, in place: requests
served, acceptance per domain (static vs online), the online draft's version, tokens/s. At the
end it times each domain on all three servers, prints a summary table and writes
OUT/summary.json, OUT/acceptance.tsv and OUT/acceptance.png (gnuplot); the servers' logs and
the online draft's state are in OUT/servers/ (a rerun replaces them).

    /usr/bin/python3 scripts/demo.py --build build --corpora build/corpora --out build/demo
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time

import zmq

TEMPERATURE = 0.0


class Server:
    def __init__(self, name, binary, args, workdir):
        self.name = name
        self.log_path = os.path.join(workdir, f"{name}.log")
        self.log = open(self.log_path, "w")
        cmd = [binary, "--osd.endpoint=tcp://127.0.0.1:*"] + args
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, cwd=workdir)
        self.endpoint = None
        deadline = time.time() + 120
        while time.time() < deadline and self.endpoint is None:
            if self.proc.poll() is not None:
                sys.exit(f"demo: osd-serve ({name}) exited:\n" + open(self.log_path).read())
            m = re.search(r"serving on (tcp://[0-9.:]+)", open(self.log_path).read())
            if m:
                self.endpoint = m.group(1)
            time.sleep(0.1)
        if self.endpoint is None:
            sys.exit(f"demo: osd-serve ({name}) did not start:\n" + open(self.log_path).read())
        self.sock = zmq.Context.instance().socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.connect(self.endpoint)
        self.in_flight = {}   # id -> (request index, domain, start time)
        self.results = []     # dicts, in completion order
        self.tokens_log = []  # (time, tokens) for tokens/s
        self.stats = {}

    def submit(self, rid, index, domain, prompt, max_new_tokens, send_domain):
        req = {"op": "generate", "id": rid, "prompt": prompt, "max_new_tokens": max_new_tokens,
               "temperature": TEMPERATURE, "seed": index, "stream": False}
        if send_domain:
            req["domain"] = domain
        self.sock.send_string(json.dumps(req))
        self.in_flight[rid] = (index, domain, time.time())

    def ask_stats(self):
        self.sock.send_string(json.dumps({"op": "stats"}))

    def drain(self):
        while self.sock.poll(0):
            ev = json.loads(self.sock.recv_string())
            kind = ev.get("event")
            if kind == "stats":
                self.stats = ev.get("stats", {})
            elif kind in ("done", "error"):
                index, domain, t0 = self.in_flight.pop(ev["id"])
                if kind == "error":
                    sys.exit(f"demo: {self.name} request {ev['id']} failed: {ev}")
                st = ev.get("stats", {})
                now = time.time()
                n = len(ev.get("tokens", []))
                self.results.append({"index": index, "domain": domain, "tokens": n, "seconds": now - t0,
                                     "drafted": st.get("num_draft_tokens", 0),
                                     "accepted": st.get("num_accepted_tokens", 0)})
                self.tokens_log.append((now, n))

    def tokens_per_second(self, horizon=10.0):
        now = time.time()
        recent = [(t, n) for t, n in self.tokens_log if now - t <= horizon]
        if len(recent) < 2:
            return 0.0
        span = max(1e-3, now - min(t for t, _ in recent))
        return sum(n for _, n in recent) / span

    def stop(self):
        self.sock.close()
        self.proc.send_signal(2)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def acceptance(results):
    d = sum(r["drafted"] for r in results)
    return sum(r["accepted"] for r in results) / d if d else float("nan")


def requests_to_half_gain(static_acc, online_acc, tail=20, smooth=5):
    """The online draft's gain over static on the domain's last `tail` requests, and the requests
    after the shift until the gain (a trailing mean of `smooth` requests) first reached half of
    it (None without a positive gain); osd-bench online computes the same (adaptation_speed)."""
    gain = [o - s for s, o in zip(static_acc, online_acc)]
    if not gain:
        return float("nan"), None
    final = sum(gain[-tail:]) / len(gain[-tail:])
    if final <= 0:
        return final, None
    for i in range(len(gain)):
        window = gain[max(0, i - smooth + 1):i + 1]
        if sum(window) / len(window) >= final / 2:
            return final, i + 1
    return final, None


def per_request_acceptance(results):
    return [r["accepted"] / r["drafted"] if r["drafted"] else 0.0 for r in sorted(results, key=lambda r: r["index"])]


def fmt(x, spec="{:.2f}"):
    return "  -  " if x != x else spec.format(x)


def draft_version(stats):
    for path in (("draft_version",), ("metrics", "draft_version")):
        v = stats
        for k in path:
            v = v.get(k, {}) if isinstance(v, dict) else {}
        if isinstance(v, int):
            return v
    return 0


def distill_decisions(stats):
    d = stats.get("distill") or stats.get("metrics", {}).get("distill") or {}
    return d.get("decisions", {})


class Display:
    def __init__(self, live):
        self.live = live
        self.lines = 0
        self.last = 0

    def show(self, text, force=False):
        if not self.live:
            if force or time.time() - self.last > 10:
                print(text, flush=True)
                self.last = time.time()
            return
        out = ""
        if self.lines:
            out += f"\033[{self.lines}F"
        out += "\n".join(line + "\033[K" for line in text.split("\n")) + "\n"
        sys.stdout.write(out)
        sys.stdout.flush()
        self.lines = text.count("\n") + 1


def render(online, static_results, workload, domains, window, started, phase):
    total = len(workload)
    st = online.stats if online else {}
    dec = distill_decisions(st)
    o_res = online.results if online else []
    lines = [f"osd demo: the draft learns while it serves      {phase}   elapsed {time.time() - started:5.0f} s",
             f"requests served   static pass {len(static_results):4d}/{total}   online pass {len(o_res):4d}/{total}   "
             f"draft version {draft_version(st)}  (updates published {dec.get('published', 0)}, "
             f"rejected {sum(v for k, v in dec.items() if k != 'published')})",
             f"tokens/s          online {online.tokens_per_second() if online else 0.0:7.1f}",
             "",
             f"domain      static acc   online acc   static (last {window})   online (last {window})   requests"]
    for d in domains:
        o = sorted((r for r in o_res if r["domain"] == d), key=lambda r: r["index"])
        idx = {r["index"] for r in o[-window:]}
        s_all = [r for r in static_results if r["domain"] == d]
        s_same = [r for r in static_results if r["index"] in idx]
        lines.append(f"{d:10s}  {fmt(acceptance(s_all)):>9s}   {fmt(acceptance(o)):>10s}   "
                     f"{fmt(acceptance(s_same)):>15s}   {fmt(acceptance(o[-window:])):>15s}   {len(o):8d}")
    return "\n".join(lines)


def run_pass(server, workload, concurrency, max_new_tokens, display, domains, window, send_domain,
             static_results, phase):
    """Replays the workload on one server, `concurrency` requests in flight."""
    started = time.time()
    server.results.clear()
    i, last = 0, 0
    online = server if phase == "online pass" else None
    while len(server.results) < len(workload):
        while len(server.in_flight) < concurrency and i < len(workload):
            domain, prompt = workload[i]
            server.submit(f"{server.name}-{i}", i, domain, prompt, max_new_tokens, send_domain)
            i += 1
        server.sock.poll(100)
        server.drain()
        if time.time() - last > 0.5:
            server.ask_stats()
            last = time.time()
            shown = static_results if online else server.results
            display.show(render(online, shown, workload, domains, window, started, phase))
    server.ask_stats()
    time.sleep(0.3)
    server.drain()
    shown = static_results if online else server.results
    display.show(render(online, shown, workload, domains, window, started, phase), force=True)
    return time.time() - started


def time_domain(server, prompts, max_new_tokens, tag, send_domain):
    """Sequential requests (batch 1): tokens/s and acceptance."""
    server.results.clear()
    t0 = time.time()
    for i, (domain, p) in enumerate(prompts):
        server.submit(f"{tag}-{i}", i, domain, p, max_new_tokens, send_domain)
        while server.in_flight:
            server.sock.poll(1000)
            server.drain()
    secs = time.time() - t0
    return sum(r["tokens"] for r in server.results) / secs, acceptance(server.results)


def plot(tsv, png, domains, per_domain, window):
    gp = shutil.which("gnuplot")
    if not gp:
        return "gnuplot not installed (apt-get install gnuplot-nox): no PNG"
    bounds = []
    start = 0
    for d in domains:
        bounds.append((start, d))
        start += per_domain
    script = [
        "set terminal pngcairo size 960,540 font 'sans,11'",
        f"set output '{png}'",
        f"set title 'osd: acceptance over requests, online vs static draft (window of {window} requests)'",
        "set xlabel 'request'", "set ylabel 'acceptance rate (accepted / drafted tokens)'",
        "set yrange [0:1]", "set key bottom right", "set grid",
    ]
    for x, d in bounds:
        script.append(f"set arrow from {x},0 to {x},1 nohead dt 2 lc rgb 'gray'")
        script.append(f"set label '{d}' at {x + 2},0.95")
    script.append(f"plot '{tsv}' using 1:3 with linespoints lw 2 title 'static draft', "
                  f"'' using 1:4 with linespoints lw 2 title 'online draft (osd)'")
    r = subprocess.run([gp], input="\n".join(script), text=True, capture_output=True)
    return "" if r.returncode == 0 else "gnuplot failed: " + r.stderr


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default="build")
    ap.add_argument("--corpora", default="build/corpora")
    ap.add_argument("--out", default="build/demo")
    ap.add_argument("--domains", default="python,c,english")
    ap.add_argument("--requests-per-domain", type=int, default=150)
    ap.add_argument("--timing-requests", type=int, default=4, help="sequential requests per domain and server")
    ap.add_argument("--max-new-tokens", type=int, default=96)
    ap.add_argument("--concurrency", type=int, default=4, help="requests in flight per server")
    ap.add_argument("--window", type=int, default=20)
    ap.add_argument("--send-domain", action="store_true", help="send each request's domain label")
    ap.add_argument("--routes", action="store_true",
                    help="one draft route per domain on the online server (implies --send-domain)")
    ap.add_argument("--temperature", type=float, default=0.0)
    ap.add_argument("--k", type=int, default=4, help="draft tokens per round (fixed, so acceptance rates compare)")
    ap.add_argument("--serve-arg", action="append", default=[], help="extra osd-serve argument (all servers)")
    ap.add_argument("--json", action="store_true", help="print the summary as one JSON line at the end")
    a = ap.parse_args()

    global TEMPERATURE
    TEMPERATURE = a.temperature
    domains = a.domains.split(",")
    if a.routes:
        a.send_domain = True
    prompts = {}
    for d in domains:
        path = os.path.join(a.corpora, f"{d}.prompts.jsonl")
        if not os.path.exists(path):
            sys.exit(f"demo: {path} is missing; build the corpora with scripts/build_corpora.py")
        prompts[d] = [json.loads(line)["prompt"] for line in open(path)]
        need = a.requests_per_domain + a.timing_requests
        if len(prompts[d]) < need:
            sys.exit(f"demo: {path} has {len(prompts[d])} prompts; {need} needed")
    workload = [(d, p) for d in domains for p in prompts[d][: a.requests_per_domain]]
    timing = {d: [(d, p) for p in prompts[d][-a.timing_requests:]] for d in domains}

    os.makedirs(a.out, exist_ok=True)
    out = os.path.abspath(a.out)
    binary = os.path.abspath(os.path.join(a.build, "osd-serve"))
    # Everything the run writes stays in OUT: the servers' logs and the online draft's state.
    work = os.path.join(out, "servers")
    os.makedirs(work, exist_ok=True)
    repo = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
    common = [f"--config-file={repo}/conf/osd.conf", "--osd.adaptive-k=false", f"--osd.k={a.k}"] + a.serve_arg
    route_arg = [f"--osd.routes={','.join(domains)}"] if a.routes else []
    state = os.path.join(work, "online-state")
    shutil.rmtree(state, ignore_errors=True)  # a rerun starts from the default draft, not the last run's
    print(f"demo: starting osd-serve processes (logs in {work})", flush=True)
    static = Server("static", binary, common + ["--osd.online=false"], work)
    target = Server("target", binary, common + ["--osd.draft=none"], work)
    online = Server("online", binary, common + ["--osd.online=true", f"--osd.online-state-dir={state}"] + route_arg,
                    work)
    display = Display(sys.stdout.isatty())
    summary = {"domains": {}, "workload": {"domains": domains, "requests_per_domain": a.requests_per_domain,
                                           "max_new_tokens": a.max_new_tokens, "concurrency": a.concurrency,
                                           "temperature": a.temperature, "k": a.k, "routes": a.routes}}
    learned = None
    try:
        print("demo: pass 1/2, the static draft (frozen) serves the workload", flush=True)
        static_seconds = run_pass(static, workload, a.concurrency, a.max_new_tokens, display, domains, a.window,
                                  a.send_domain, [], "static pass")
        static_results = list(static.results)
        print("demo: pass 2/2, the same draft serves it while learning (osd)", flush=True)
        online_seconds = run_pass(online, workload, a.concurrency, a.max_new_tokens, display, domains, a.window,
                                  a.send_domain, static_results, "online pass")
        online_results = list(online.results)
        online_stats = online.stats
        online.stop()  # saves the learned draft(s) to the state folder
        # The server saves each route's draft in STATE/route-NAME/draft (an HF checkpoint folder).
        if a.routes:
            drafts = ",".join(os.path.join(state, f"route-{d}", "draft") for d in domains)
            learned_args = route_arg + [f"--osd.route-drafts={drafts}"]
        else:
            learned_args = [f"--osd.draft={os.path.join(state, 'route-default', 'draft')}"]
        learned = Server("learned", binary, common + ["--osd.online=false"] + learned_args, work)
        print(f"\ndemo: timing each domain at batch 1 ({a.timing_requests} requests x {a.max_new_tokens} tokens per "
              "server, one server at a time; the learned draft frozen)", flush=True)
        for d in domains:
            row = {}
            for name, srv in (("target", target), ("static", static), ("online", learned)):
                tps, acc = time_domain(srv, timing[d], a.max_new_tokens, f"t-{d}-{name}", a.send_domain)
                row[f"{name}_tokens_per_s"] = tps
                if name != "target":
                    row[f"{name}_timing_acceptance"] = acc
            summary["domains"][d] = row
    finally:
        for srv in (static, target, online, learned):
            if srv is not None:
                try:
                    srv.stop()
                except Exception:
                    pass
    summary["static_pass_tokens_per_s"] = sum(r["tokens"] for r in static_results) / static_seconds
    summary["online_pass_tokens_per_s"] = sum(r["tokens"] for r in online_results) / online_seconds
    finish(a, domains, workload, summary, online_seconds, online_stats, out,
           {"static": static_results, "online": online_results})


def finish(a, domains, workload, summary, serve_seconds, online_stats, out, serve_results):
    per = a.requests_per_domain
    w = a.window
    # acceptance.tsv: window end index, domain, static, online
    tsv = os.path.join(out, "acceptance.tsv")
    with open(tsv, "w") as f:
        f.write("# request\tdomain\tstatic\tonline\n")
        for di in range(len(domains)):  # windows inside each domain's segment
            for start in range(di * per, (di + 1) * per, w):
                end = min(start + w, (di + 1) * per)
                sel = lambda name: [r for r in serve_results[name] if start <= r["index"] < end]
                f.write(f"{(start + end) / 2:.0f}\t{workload[start][0]}\t{acceptance(sel('static')):.4f}\t"
                        f"{acceptance(sel('online')):.4f}\n")
    png = os.path.join(out, "acceptance.png")
    plot_msg = plot(tsv, png, domains, per, w)
    print()
    print(f"{'domain':10s} {'static acc':>10s} {'online acc':>10s} {'static end':>10s} {'online end':>10s} "
          f"{'gain':>6s} {'to half':>7s} {'target tok/s':>12s} {'static x':>9s} {'online x':>9s}")
    for i, d in enumerate(domains):
        s = [r for r in serve_results["static"] if r["domain"] == d]
        o = sorted((r for r in serve_results["online"] if r["domain"] == d), key=lambda r: r["index"])
        row = summary["domains"][d]
        row["static_acceptance"] = acceptance(s)
        row["online_acceptance"] = acceptance(o)
        row["online_acceptance_last_window"] = acceptance(o[-w:])
        row["static_acceptance_last_window"] = acceptance(sorted(s, key=lambda r: r["index"])[-w:])
        row["gain_last_window"] = row["online_acceptance_last_window"] - row["static_acceptance_last_window"]
        final_gain, to_half = requests_to_half_gain(per_request_acceptance(s), per_request_acceptance(o))
        row["final_gain"] = final_gain
        row["requests_to_half_gain"] = to_half
        row["static_speedup"] = row["static_tokens_per_s"] / row["target_tokens_per_s"]
        row["online_speedup"] = row["online_tokens_per_s"] / row["target_tokens_per_s"]
        print(f"{d:10s} {row['static_acceptance']:10.3f} {row['online_acceptance']:10.3f} "
              f"{row['static_acceptance_last_window']:10.3f} {row['online_acceptance_last_window']:10.3f} "
              f"{row['gain_last_window']:+6.3f} {str(to_half) if to_half else '-':>7s} "
              f"{row['target_tokens_per_s']:12.1f} {row['static_speedup']:8.2f}x {row['online_speedup']:8.2f}x")
    summary["serve_seconds"] = serve_seconds
    summary["online_draft_version"] = draft_version(online_stats)
    summary["distill_decisions"] = distill_decisions(online_stats)
    summary["png"] = png if not plot_msg else None
    mode = "greedy" if a.temperature == 0 else f"temperature {a.temperature}"
    print(f"\nacceptance = accepted / drafted tokens ({mode}, k = {a.k}); 'end' = the domain's last {w} requests; "
          "'to half' = requests after the shift until the online draft's gain over static (a trailing mean of 5 "
          "requests) first reached half of its gain over the last 20; "
          "speedups = tokens/s at batch 1 over target-only, the learned draft frozen.")
    print(f"serving throughput: static pass {summary['static_pass_tokens_per_s']:.1f} tokens/s, online pass "
          f"{summary['online_pass_tokens_per_s']:.1f} tokens/s (the distiller trains on the same cores); "
          f"draft version at the end {summary['online_draft_version']}, decisions {summary['distill_decisions']}")
    with open(os.path.join(out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2)
    print(f"wrote {os.path.join(out, 'summary.json')}, {tsv}" + (f", {png}" if not plot_msg else f" ({plot_msg})"))
    if a.json:
        print(json.dumps(summary))


if __name__ == "__main__":
    main()
