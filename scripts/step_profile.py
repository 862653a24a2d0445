#!/usr/bin/env python3
"""Where a graphed decode step's time goes (GPU host).

Rebuilds osd's layer (models/core/transformer.cpp) op for op in PyTorch at a given shape, with a KV
cache of `slots` x `max_len` read through a slot index as the graphed step does, and reports:
  * the graphed step time for T = 1 and T = k + 1 tokens (median of CUDA-event timed replays);
  * the kernels of one eager step (torch.profiler), grouped, with their GPU time;
  * the same for variants that cut kernels (joint RoPE of q and k, an additive mask built once,
    the norm's weight inside the fused kernel), so a change to the C++ step is chosen by measure.
Usage: python3 scripts/step_profile.py [--layers 24 --dim 640 --heads 10 --ffn 1728 --json F]
"""
import argparse
import json
import math
from collections import defaultdict

import torch
import torch.nn.functional as F

p = argparse.ArgumentParser()
p.add_argument("--layers", type=int, default=24)
p.add_argument("--dim", type=int, default=640)
p.add_argument("--heads", type=int, default=10)
p.add_argument("--kv-heads", type=int, default=0)
p.add_argument("--ffn", type=int, default=1728)
p.add_argument("--vocab", type=int, default=256)
p.add_argument("--slots", type=int, default=8)
p.add_argument("--max-len", type=int, default=1024)
p.add_argument("--tokens", type=int, nargs="+", default=[1, 5])
p.add_argument("--json", default="")
a = p.parse_args()
dev, dt = "cuda", torch.bfloat16
H, Hkv, D = a.heads, a.kv_heads or a.heads, a.dim // a.heads
torch.manual_seed(0)


def w(*shape):
    return (torch.randn(*shape, device=dev) * 0.02).to(dt)


layers = [dict(an=torch.ones(a.dim, device=dev, dtype=dt), wqkv=w((H + 2 * Hkv) * D, a.dim), wo=w(a.dim, H * D),
               mn=torch.ones(a.dim, device=dev, dtype=dt), wgu=w(2 * a.ffn, a.dim), wd=w(a.dim, a.ffn))
          for _ in range(a.layers)]
embed, norm = w(a.vocab, a.dim), torch.ones(a.dim, device=dev, dtype=dt)
kc = [torch.randn(a.slots, a.max_len, Hkv, D, device=dev, dtype=dt) for _ in range(a.layers)]
vc = [torch.randn(a.slots, a.max_len, Hkv, D, device=dev, dtype=dt) for _ in range(a.layers)]
pos_all = torch.arange(4096, device=dev).float()
inv = 1.0 / (10000 ** (torch.arange(0, D, 2, device=dev).float() / D))
fr = pos_all[:, None] * inv[None]
emb = torch.cat([fr, fr], -1)
COS, SIN = emb.cos(), emb.sin()
SIN_SIGNED = torch.cat([-SIN[:, : D // 2], SIN[:, D // 2:]], -1)


def rms(x, wt, fused_weight=False):
    if fused_weight:
        return F.rms_norm(x, (x.size(-1),), wt, 1e-5)
    return wt * F.rms_norm(x, (x.size(-1),), None, 1e-5)


def rope(x, cos, sin):
    half = x.size(-1) // 2
    x1, x2 = x[..., :half], x[..., half:]
    return x * cos + torch.cat([-x2, x1], -1) * sin


def rope_roll(x, cos, sin_signed):  # rotate-half as a roll by half, its sign folded into sin
    return torch.addcmul(x * cos, torch.roll(x, x.size(-1) // 2, -1), sin_signed)


def step(tokens, lens, slots, variant):
    B, T = tokens.shape
    S = a.max_len
    positions = lens.view(B, 1) + torch.arange(T, device=dev).view(1, T)
    key_pos = torch.arange(S, device=dev)
    mask = (key_pos.view(1, 1, S) <= positions.unsqueeze(2)).unsqueeze(1)  # [B, 1, T, S]
    if "addmask" in variant:
        mask = torch.zeros(mask.shape, device=dev, dtype=dt).masked_fill_(mask.logical_not(), float("-inf"))
    cos = COS[positions].to(dt).unsqueeze(2)
    sin = (SIN_SIGNED if "roll" in variant else SIN)[positions].to(dt).unsqueeze(2)
    x = F.embedding(tokens, embed)
    si = slots.view(B, 1)
    fw = "normw" in variant
    for l, L in enumerate(layers):
        h = rms(x, L["an"], fw)
        qkv = h @ L["wqkv"].t()
        if "roll" in variant:
            qk = rope_roll(qkv[..., : (H + Hkv) * D].view(B, T, H + Hkv, D), cos, sin)
            q, k = qk[:, :, :H], qk[:, :, H:]
        else:
            q = rope(qkv[..., : H * D].view(B, T, H, D), cos, sin)
            k = rope(qkv[..., H * D: (H + Hkv) * D].view(B, T, Hkv, D), cos, sin)
        v = qkv[..., (H + Hkv) * D:].view(B, T, Hkv, D)
        kc[l].index_put_((si, positions), k)
        vc[l].index_put_((si, positions), v)
        keys = kc[l].index_select(0, slots).permute(0, 2, 1, 3)
        vals = vc[l].index_select(0, slots).permute(0, 2, 1, 3)
        o = F.scaled_dot_product_attention(q.transpose(1, 2), keys, vals, attn_mask=mask, scale=1 / math.sqrt(D),
                                           enable_gqa=H != Hkv)
        x = x + o.transpose(1, 2).reshape(B, T, H * D) @ L["wo"].t()
        h = rms(x, L["mn"], fw)
        gu = h @ L["wgu"].t()
        x = x + (F.silu(gu[..., : a.ffn]) * gu[..., a.ffn:]) @ L["wd"].t()
    x = rms(x, norm, fw)
    return (x @ embed.t()).float()


def graphed(T, variant):
    tokens = torch.randint(0, a.vocab, (1, T), device=dev)
    lens = torch.tensor([300], device=dev)
    slots = torch.tensor([3], device=dev)
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for _ in range(3):
            step(tokens, lens, slots, variant)
    torch.cuda.current_stream().wait_stream(s)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        step(tokens, lens, slots, variant)
    times = []
    for _ in range(20):
        g.replay()
    for _ in range(200):
        e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        e0.record()
        g.replay()
        e1.record()
        e1.synchronize()
        times.append(e0.elapsed_time(e1))
    times.sort()
    # kernel list of one eager step
    from torch.profiler import profile, ProfilerActivity
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        step(tokens, lens, slots, variant)
        torch.cuda.synchronize()
    groups = defaultdict(lambda: [0, 0.0])
    n = 0
    for ev in prof.events():
        if ev.device_type == torch.autograd.DeviceType.CUDA:
            name = ev.name[:70]
            groups[name][0] += 1
            groups[name][1] += ev.device_time_total if hasattr(ev, "device_time_total") else ev.cuda_time_total
            n += 1
    return times[len(times) // 2], n, groups


results = {}
print(f"shape: {a.layers} layers, dim {a.dim}, heads {H}/{Hkv}, ffn {a.ffn}; cache {a.slots} x {a.max_len}; "
      f"{torch.cuda.get_device_name()}")
for variant in ["base", "roll", "roll+addmask", "roll+addmask+normw"]:
    for T in a.tokens:
        ms, n, groups = graphed(T, variant)
        results[f"{variant}/T{T}"] = dict(ms=ms, kernels=n)
        print(f"\n== {variant}, T={T}: graphed step {ms:.3f} ms, {n} kernels ({n / a.layers:.1f} per layer)")
        if variant in ("base", "roll+addmask+normw"):
            for name, (cnt, us) in sorted(groups.items(), key=lambda kv: -kv[1][1])[:16]:
                print(f"  {cnt:5d} x {us / max(cnt, 1):7.2f} us = {us / 1000:7.3f} ms  {name}")
# GEMM shapes at M = 1 and 5: matmul vs linear
print("\nGEMMs, graphed, 100 in a row (us each):")
for (n_out, n_in) in [((H + 2 * Hkv) * D, a.dim), (a.dim, H * D), (2 * a.ffn, a.dim), (a.dim, a.ffn)]:
    W = w(n_out, n_in)
    row = []
    for M in (1, 5, 8):
        x = w(1, M, n_in)
        for kind in ("matmul", "linear"):
            f = (lambda: x @ W.t()) if kind == "matmul" else (lambda: F.linear(x, W))
            f()
            torch.cuda.synchronize()
            g = torch.cuda.CUDAGraph()
            with torch.cuda.graph(g):
                for _ in range(100):
                    f()
            g.replay()
            e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            e0.record()
            for _ in range(5):
                g.replay()
            e1.record()
            e1.synchronize()
            us = e0.elapsed_time(e1) * 1000 / 500
            row.append(f"M{M} {kind} {us:5.1f}")
            results[f"gemm/{n_out}x{n_in}/M{M}/{kind}"] = us
    print(f"  [{n_out} x {n_in}]: " + ", ".join(row))
if a.json:
    json.dump(results, open(a.json, "w"), indent=1)
