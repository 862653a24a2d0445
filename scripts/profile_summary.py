#!/usr/bin/env python3
"""Summarise chrome traces written by `OSD_PROFILE=DIR osd-bench model`: the ops that take the
most host time (sum of durations; nested ops count in their parents too) and the call counts."""
import collections, json, sys

for path in sys.argv[1:]:
    events = json.load(open(path))
    dur, calls = collections.Counter(), collections.Counter()
    for e in events:
        if e.get("ph") == "X":
            dur[e["name"]] += e.get("dur", 0.0)
            calls[e["name"]] += 1
    print(f"== {path}: {sum(calls.values())} op calls")
    for name, us in dur.most_common(14):
        print(f"  {name:48s} {us / 1000:9.3f} ms  {calls[name]:6d} calls")
