#!/usr/bin/env python3
"""Hugging Face transformers on the same weights and prompts as an osd run: `generate` without
(target only) and with `assistant_model` (HF's assisted generation, its draft-model speculation),
greedy, batch 1, at HF's best available configuration on the card, side by side.

Inputs, both written by the osd run being compared with:
  --export DIR    `osd-bench online ... --export-drafts DIR`: DIR/manifest.json, DIR/target,
                  DIR/draft-static, DIR/draft-online-ROUTE (Hugging Face checkpoint folders: the
                  target and drafts exactly as osd served them, the online drafts as adapted)
  --prompts FILE  `osd-bench online ... --dump-prompts FILE`: one JSON line per request,
                  {"index", "domain", "prompt_ids", "hash", "new_tokens"}; the hashes (FNV-1a 64
                  of the token ids, as osd computes them) are checked

    python3 scripts/hf_assisted.py --export DIR --prompts FILE [--draft online|static]
        [--new-tokens N] [--limit N] [--repeats 3] [--config auto|static-compile|static|
        dynamic-compile|dynamic] [--json OUT] [--dry-run]

Configurations, best first (--config auto tries them in this order, separately for plain and
assisted generation, and reports which one ran and why the better ones did not):
  static-compile   cache_implementation="static" + torch.compile(forward, mode="reduce-overhead")
  static           cache_implementation="static", eager
  dynamic-compile  the default dynamic cache + torch.compile(forward)
  dynamic          the default dynamic cache, eager
Each configuration warms up on the first prompts, then every prompt runs --repeats times; the
figures are medians over repeats (per-repeat values kept), so compilations for a prompt length
first met in the first repeat do not set the figure. --dry-run checks the inputs (manifest,
folders, prompts file and its hashes) without importing torch or transformers.

The JSON (--json OUT and the last line of stdout) names exactly what each column is:
implementation and versions, device, cache, compile, the draft folder and its version, the
prompts file, its count and hash check, new tokens; per domain the median latency and tokens/s of
each column, assisted / plain speedup, and how many assisted outputs equal plain outputs.
"""
import argparse
import json
import os
import statistics
import sys
import time

CONFIGS = ["static-compile", "static", "dynamic-compile", "dynamic"]


def fnv1a64(ids):
    """FNV-1a 64 of token ids, each as 8 little-endian bytes (osd's prompt_hash)."""
    h = 1469598103934665603
    for t in ids:
        for b in (t & 0xFFFFFFFFFFFFFFFF).to_bytes(8, "little"):
            h ^= b
            h = (h * 1099511628211) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


def is_checkpoint(folder):
    return os.path.isfile(os.path.join(folder, "config.json")) and (
        os.path.isfile(os.path.join(folder, "model.safetensors"))
        or os.path.isfile(os.path.join(folder, "model.safetensors.index.json")))


def read_inputs(a):
    """The manifest, the prompts (checked) and the draft folder per domain; raises ValueError."""
    manifest_path = os.path.join(a.export, "manifest.json")
    if not os.path.isfile(manifest_path):
        raise ValueError(f"{manifest_path}: missing (run osd-bench online --export-drafts {a.export})")
    manifest = json.load(open(manifest_path))
    target = os.path.join(a.export, manifest["target"]["folder"])
    if not is_checkpoint(target):
        raise ValueError(f"{target}: not a Hugging Face checkpoint folder")
    prompts, bad_hashes = [], 0
    with open(a.prompts) as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                p = json.loads(line)
                ids = [int(t) for t in p["prompt_ids"]]
            except (ValueError, KeyError, TypeError) as e:
                raise ValueError(f"{a.prompts}:{n}: not a prompt line ({e})")
            if "hash" in p and p["hash"] != fnv1a64(ids):
                bad_hashes += 1
            prompts.append({"index": p.get("index", n - 1), "domain": p.get("domain", "default"),
                            "ids": ids, "new_tokens": p.get("new_tokens")})
    if not prompts:
        raise ValueError(f"{a.prompts}: no prompts")
    if bad_hashes:
        raise ValueError(f"{a.prompts}: {bad_hashes} prompts do not match their hash")
    if a.limit:
        by_domain = {}
        for p in prompts:
            by_domain.setdefault(p["domain"], []).append(p)
        prompts = [p for ps in by_domain.values() for p in ps[: a.limit]]
    drafts = {}
    for d in sorted({p["domain"] for p in prompts}):
        if a.draft == "static":
            drafts[d] = {"folder": manifest["static_draft"]["folder"], "version": 0}
        else:
            route = manifest.get("domain_route", {}).get(d, "default")
            if route not in manifest.get("online_drafts", {}):
                raise ValueError(f"manifest: no online draft for domain {d} (route {route})")
            drafts[d] = dict(manifest["online_drafts"][route])
        folder = os.path.join(a.export, drafts[d]["folder"])
        if not is_checkpoint(folder):
            raise ValueError(f"{folder}: not a Hugging Face checkpoint folder")
    new_tokens = a.new_tokens or prompts[0]["new_tokens"]
    if not new_tokens:
        raise ValueError("--new-tokens: not given and not in the prompts file")
    return manifest, target, prompts, drafts, int(new_tokens)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--export", required=True, help="osd-bench online --export-drafts folder")
    ap.add_argument("--prompts", required=True, help="osd-bench online --dump-prompts file")
    ap.add_argument("--draft", choices=["online", "static"], default="online",
                    help="the adapted drafts (default) or the static one")
    ap.add_argument("--new-tokens", type=int, default=0, help="default: the prompts file's")
    ap.add_argument("--limit", type=int, default=0, help="at most N prompts per domain")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=2, help="untimed prompts per configuration")
    ap.add_argument("--config", choices=["auto"] + CONFIGS, default="auto")
    ap.add_argument("--json")
    ap.add_argument("--dry-run", action="store_true", help="check the inputs only (no torch)")
    a = ap.parse_args()
    try:
        manifest, target_dir, prompts, drafts, new_tokens = read_inputs(a)
    except (OSError, ValueError, KeyError) as e:
        print(f"hf_assisted.py: {e}", file=sys.stderr)
        return 1
    plan = {"target": target_dir, "drafts": drafts, "prompts": len(prompts), "new_tokens": new_tokens,
            "domains": sorted(drafts), "configs": CONFIGS if a.config == "auto" else [a.config]}
    if a.dry_run:
        print("dry run: inputs are consistent: " + json.dumps(plan))
        return 0
    return run(a, manifest, target_dir, prompts, drafts, new_tokens)


def run(a, manifest, target_dir, prompts, drafts, new_tokens):
    import torch
    import transformers
    from transformers import AutoModelForCausalLM

    dev = "cuda"
    dtype = {"bfloat16": torch.bfloat16, "float16": torch.float16}.get(manifest["target"].get("dtype"), torch.float32)

    def load(folder):
        return AutoModelForCausalLM.from_pretrained(folder, dtype=dtype).to(dev).eval()

    target = load(target_dir)
    draft_models = {d: load(os.path.join(a.export, drafts[d]["folder"])) for d in drafts}
    gen = dict(max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False, pad_token_id=0)

    def configure(model, config):
        """Applies a configuration; returns generate kwargs. Compiling wraps forward once."""
        if config.endswith("compile") and not getattr(model, "_osd_compiled", False):
            model.forward = torch.compile(model.forward, mode="reduce-overhead")
            model._osd_compiled = True
        return {"cache_implementation": "static"} if config.startswith("static") else {}

    def generate(ids, config, assistant):
        kw = dict(gen, **configure(target, config))
        if assistant is not None:
            configure(assistant, config)
            kw["assistant_model"] = assistant
        x = torch.tensor([ids], device=dev)
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        with torch.no_grad():
            out = target.generate(x, **kw)
        torch.cuda.synchronize()
        return time.perf_counter() - t0, out[0, len(ids):].tolist()

    def pick_config(assisted):
        """The best configuration that runs (a warm-up on the first prompts); why others did not."""
        failures = {}
        for config in (CONFIGS if a.config == "auto" else [a.config]):
            try:
                for p in prompts[: a.warmup]:
                    generate(p["ids"], config, draft_models[p["domain"]] if assisted else None)
                return config, failures
            except Exception as e:  # a configuration this transformers / card does not support
                failures[config] = f"{type(e).__name__}: {str(e)[:300]}"
        raise RuntimeError(f"no configuration ran: {failures}")

    columns = {}
    for name, assisted in (("hf_plain", False), ("hf_assisted", True)):
        config, failures = pick_config(assisted)
        columns[name] = {"config": config, "failed_configs": failures}
    # Timed: every prompt, plain then assisted, --repeats times.
    times = {name: {} for name in columns}
    outputs = {name: {} for name in columns}
    for r in range(a.repeats):
        for p in prompts:
            for name, assisted in (("hf_plain", False), ("hf_assisted", True)):
                t, out = generate(p["ids"], columns[name]["config"], draft_models[p["domain"]] if assisted else None)
                times[name].setdefault(p["index"], []).append(t * 1e3)
                outputs[name][p["index"]] = out
    result = {
        "implementation": f"transformers {transformers.__version__}, torch {torch.__version__}",
        "device": torch.cuda.get_device_name(0),
        "dtype": str(dtype).replace("torch.", ""),
        "target": {"folder": target_dir, "spec": manifest.get("target_spec")},
        "prompts": {"file": a.prompts, "count": len(prompts), "hashes": "checked (FNV-1a 64 of the token ids)"},
        "new_tokens": new_tokens, "batch": 1, "greedy": True, "repeats": a.repeats,
        "columns": {}, "domains": {},
    }
    for name, c in columns.items():
        config = c["config"]
        result["columns"][name] = {
            "what": "target.generate" + (" with assistant_model (HF assisted generation)" if name == "hf_assisted" else ""),
            "cache": "static (cache_implementation='static')" if config.startswith("static") else "dynamic (default)",
            "compile": "torch.compile(forward, mode='reduce-overhead')" if config.endswith("compile") else "eager",
            "config": config, "failed_configs": c["failed_configs"],
            "draft": ({d: {"folder": drafts[d]["folder"], "version": drafts[d].get("version")} for d in drafts}
                      if name == "hf_assisted" else None),
        }
    for d in sorted(drafts):
        idx = [p["index"] for p in prompts if p["domain"] == d]
        row = {"prompts": len(idx)}
        for name in columns:
            per_prompt = [statistics.median(times[name][i]) for i in idx]
            per_repeat = [statistics.mean(times[name][i][r] for i in idx) for r in range(a.repeats)]
            row[name] = {"latency_ms": statistics.mean(per_prompt), "latency_ms_per_repeat": per_repeat,
                         "tokens_per_s": new_tokens * 1e3 / statistics.mean(per_prompt)}
        row["speedup_assisted"] = row["hf_plain"]["latency_ms"] / row["hf_assisted"]["latency_ms"]
        row["assisted_equals_plain"] = sum(outputs["hf_assisted"][i] == outputs["hf_plain"][i] for i in idx)
        result["domains"][d] = row
        print(f"{d:8s} HF plain {row['hf_plain']['latency_ms']:8.1f} ms  assisted {row['hf_assisted']['latency_ms']:8.1f} ms  "
              f"speedup {row['speedup_assisted']:.2f}x  same output {row['assisted_equals_plain']}/{len(idx)}  "
              f"(plain: {columns['hf_plain']['config']}, assisted: {columns['hf_assisted']['config']})", flush=True)
    if a.json:
        json.dump(result, open(a.json, "w"), indent=1)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
