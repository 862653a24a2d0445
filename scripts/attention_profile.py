#!/usr/bin/env python3
"""Which attention kernel a graphed decode/verification step should use (GPU host).

Times, graphed (CUDA-event timed replays of 50 calls), attention of T query tokens against a span
of S cached positions read from a slot cache, with an additive mask: SDPA's cuDNN, memory-efficient
and math backends, and the hand-written grouped form (two matmuls and a softmax), plus the cache
gather (index_select) and cache write (index_put vs index_copy on a flat view) at each span.
Usage: python3 scripts/attention_profile.py [--heads 10 --head-dim 64 --json F]
"""
import argparse
import json
import math

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

p = argparse.ArgumentParser()
p.add_argument("--heads", type=int, default=10)
p.add_argument("--kv-heads", type=int, default=0)
p.add_argument("--head-dim", type=int, default=64)
p.add_argument("--slots", type=int, default=32)
p.add_argument("--max-len", type=int, default=1024)
p.add_argument("--json", default="")
a = p.parse_args()
dev, dt = "cuda", torch.bfloat16
H, Hkv, D = a.heads, a.kv_heads or a.heads, a.head_dim
kc = torch.randn(a.slots, a.max_len, Hkv, D, device=dev, dtype=dt)
vc = torch.randn(a.slots, a.max_len, Hkv, D, device=dev, dtype=dt)


def timed(f, reps=50):
    f()
    torch.cuda.synchronize()
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        for _ in range(reps):
            f()
    g.replay()
    best = []
    for _ in range(5):
        e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        e0.record()
        g.replay()
        e1.record()
        e1.synchronize()
        best.append(e0.elapsed_time(e1) * 1000 / reps)
    return sorted(best)[2]


res = {}
print(f"{torch.cuda.get_device_name()}: heads {H}/{Hkv}, head dim {D}; us per call (graphed)")
print(f"{'B':>3} {'T':>3} {'S':>5} | {'gather':>7} {'put':>6} {'copy':>6} | {'cudnn':>7} {'effic':>7} {'math':>7} {'manual':>7}")
for B in (1, 16):
    for T in (1, 5):
        for S in (256, 512, 1024):
            slots = torch.arange(B, device=dev) * 2
            lens = torch.full((B,), S - 2 * T, device=dev)
            pos = lens.view(B, 1) + torch.arange(T, device=dev).view(1, T)
            mask = (torch.arange(S, device=dev).view(1, 1, S) <= pos.unsqueeze(2)).unsqueeze(1)
            amask = torch.zeros(mask.shape, device=dev, dtype=dt).masked_fill_(mask.logical_not(), float("-inf"))
            q = torch.randn(B, H, T, D, device=dev, dtype=dt)
            knew = torch.randn(B, T, Hkv, D, device=dev, dtype=dt)
            flat_idx = (slots.view(B, 1) * a.max_len + pos).view(-1)
            kflat = kc.view(-1, Hkv, D)
            keys = kc.index_select(0, slots).narrow(1, 0, S).permute(0, 2, 1, 3)
            vals = vc.index_select(0, slots).narrow(1, 0, S).permute(0, 2, 1, 3)
            row = dict(
                gather=timed(lambda: kc.narrow(1, 0, S).index_select(0, slots)),
                put=timed(lambda: kc.index_put_((slots.view(B, 1), pos), knew)),
                copy=timed(lambda: kflat.index_copy_(0, flat_idx, knew.view(B * T, Hkv, D))))
            for name, be in (("cudnn", SDPBackend.CUDNN_ATTENTION), ("effic", SDPBackend.EFFICIENT_ATTENTION),
                             ("math", SDPBackend.MATH)):
                try:
                    with sdpa_kernel([be]):
                        row[name] = timed(lambda: F.scaled_dot_product_attention(q, keys, vals, attn_mask=amask,
                                                                                 scale=1 / math.sqrt(D)))
                except Exception as e:  # backend refuses the shape
                    row[name] = float("nan")

            def manual():
                s = torch.matmul(q, keys.transpose(-1, -2)) * (1 / math.sqrt(D)) + amask
                return torch.matmul(torch.softmax(s, -1, dtype=torch.float32).to(dt), vals)
            row["manual"] = timed(manual)
            res[f"B{B}/T{T}/S{S}"] = row
            print(f"{B:3d} {T:3d} {S:5d} | {row['gather']:7.2f} {row['put']:6.2f} {row['copy']:6.2f} | "
                  f"{row['cudnn']:7.2f} {row['effic']:7.2f} {row['math']:7.2f} {row['manual']:7.2f}")
if a.json:
    json.dump(res, open(a.json, "w"), indent=1)
