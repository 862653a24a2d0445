#!/usr/bin/env python3
"""Builds osd's training corpora from text that Debian packages install (nothing downloaded).

Domains (each a separate file pair, so drafts can be trained on one and served on others):
  python   the Python 3 standard library source (/usr/lib/python3.X/**/*.py, package python3.X)
  c        C headers of libc6-dev and linux-libc-dev (/usr/include)
  english  the King James Bible (package bible-kjv, read with `bible`), verse references removed

For each domain it writes DOMAIN.train.txt, DOMAIN.eval.txt and DOMAIN.prompts.jsonl (prompts cut
from the eval text only, at line starts) plus manifest.json (sizes, sha256, sources). A document
(a source file, a Bible chapter) goes to eval when crc32(its name) % 20 == 0, so the split does
not depend on which other files exist. Output is byte-identical for the same installed packages.

  python3 scripts/build_corpora.py --out build/corpora [--max-bytes 4000000] [--prompts 400]
"""
import argparse
import glob
import hashlib
import json
import os
import random
import re
import subprocess
import sys
import sysconfig
import zlib


def python_docs():
    root = sysconfig.get_paths()["stdlib"]
    for path in sorted(glob.glob(os.path.join(root, "**", "*.py"), recursive=True)):
        rel = os.path.relpath(path, root)
        if rel.startswith(("test/", "idlelib/idle_test/", "site-packages/", "dist-packages/")) or "/tests/" in rel:
            continue
        yield rel, open(path, "rb").read()


def c_docs():
    # Only the headers of libc6-dev and linux-libc-dev, so other installed -dev packages do not
    # change the corpus.
    try:
        listing = subprocess.run(["dpkg-query", "-L", "libc6-dev", "linux-libc-dev"], check=True,
                                 capture_output=True).stdout.decode()
    except (OSError, subprocess.CalledProcessError) as e:
        sys.exit(f"build_corpora: the c domain needs libc6-dev and linux-libc-dev: {e}")
    for path in sorted(set(listing.split("\n"))):
        if path.endswith(".h") and os.path.isfile(path) and not os.path.islink(path):
            yield path, open(path, "rb").read()


def english_docs():
    try:
        text = subprocess.run(["bible", "-f", "gen1:1-rev22:21"], check=True, capture_output=True).stdout.decode()
    except (OSError, subprocess.CalledProcessError) as e:
        sys.exit(f"build_corpora: the english domain needs the `bible` program (apt-get install bible-kjv): {e}")
    chapters = {}
    order = []
    for line in text.splitlines():
        m = re.match(r"^(\w+?)(\d+):(\d+) (.*)$", line)
        if not m:
            continue
        key = f"{m.group(1)}{m.group(2)}"
        if key not in chapters:
            chapters[key] = []
            order.append(key)
        chapters[key].append(m.group(4))
    for key in order:
        yield key, ("\n".join(chapters[key]) + "\n").encode()


DOMAINS = {"python": python_docs, "c": c_docs, "english": english_docs}


def clean(data):
    # Keep printable text; files with NUL bytes are not text.
    if b"\0" in data:
        return None
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return data.replace(b"\r\n", b"\n")


def prompts_from(eval_text, n, rng, lo=64, hi=160):
    lines = eval_text.split(b"\n")
    starts, pos = [], 0
    for ln in lines:
        if len(ln.strip()) > 8:
            starts.append(pos)
        pos += len(ln) + 1
    out = []
    if not starts:
        return out
    for _ in range(n):
        s = rng.choice(starts)
        piece = eval_text[s : s + rng.randint(lo, hi)]
        # cut at a UTF-8 boundary
        while piece and (piece[-1] & 0xC0) == 0x80:
            piece = piece[:-1]
        if piece and piece[-1] >= 0xC0:
            piece = piece[:-1]
        out.append(piece.decode("utf-8", errors="ignore"))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="build/corpora")
    ap.add_argument("--max-bytes", type=int, default=4_000_000, help="training bytes per domain (cap)")
    ap.add_argument("--max-eval-bytes", type=int, default=400_000, help="eval bytes per domain (cap)")
    ap.add_argument("--prompts", type=int, default=400, help="prompts per domain")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--domains", default=",".join(DOMAINS))
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    manifest = {"seed": a.seed, "max_bytes": a.max_bytes, "domains": {}}
    for name in a.domains.split(","):
        if name not in DOMAINS:
            sys.exit(f"build_corpora: unknown domain {name!r} (known: {', '.join(DOMAINS)})")
        train, evals, ntrain, neval = [], [], 0, 0
        for doc_name, data in DOMAINS[name]():
            data = clean(data)
            if not data:
                continue
            if zlib.crc32(doc_name.encode()) % 20 == 0:
                if neval < a.max_eval_bytes:
                    evals.append(data)
                    neval += len(data)
            elif ntrain < a.max_bytes:
                train.append(data)
                ntrain += len(data)
        if not train or not evals:
            sys.exit(f"build_corpora: domain {name} found no text (is its package installed?)")
        train_text = b"\n\n".join(train)[: a.max_bytes]
        eval_text = b"\n\n".join(evals)[: a.max_eval_bytes]
        rng = random.Random(f"{a.seed}:{name}")
        prompts = prompts_from(eval_text, a.prompts, rng)
        files = {}
        for kind, payload in (("train", train_text), ("eval", eval_text)):
            path = os.path.join(a.out, f"{name}.{kind}.txt")
            with open(path, "wb") as f:
                f.write(payload)
            files[kind] = {"path": path, "bytes": len(payload), "sha256": hashlib.sha256(payload).hexdigest()}
        with open(os.path.join(a.out, f"{name}.prompts.jsonl"), "w") as f:
            for p in prompts:
                f.write(json.dumps({"domain": name, "prompt": p}) + "\n")
        manifest["domains"][name] = {"files": files, "prompts": len(prompts), "documents": len(train) + len(evals)}
        print(f"build_corpora: {name:8s} train {len(train_text):>9,d} B  eval {len(eval_text):>8,d} B  "
              f"prompts {len(prompts)}")
    with open(os.path.join(a.out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=2)


if __name__ == "__main__":
    main()
