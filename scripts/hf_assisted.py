#!/usr/bin/env python3
"""The same target/draft checkpoints in Hugging Face transformers: `generate` without and with
`assistant_model` (HF's assisted generation, its draft-model speculation), greedy, batch 1, the
same prompts and lengths as osd's batch-1 run. Prints a table and writes JSON.

    python3 scripts/hf_assisted.py --target DIR --draft DIR --corpora DIR --prompts 10 --new-tokens 64 --json OUT

The pair is byte-level (token t < 256 is byte t), so prompts are their UTF-8 bytes.
"""
import argparse
import json
import os
import time

import torch
from transformers import AutoModelForCausalLM


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--target", required=True)
    ap.add_argument("--draft", required=True)
    ap.add_argument("--corpora", required=True)
    ap.add_argument("--domains", nargs="+", default=["python", "c", "english"])
    ap.add_argument("--prompts", type=int, default=10)
    ap.add_argument("--skip", type=int, default=0, help="skip the first N prompts of each domain (as osd-bench online --skip)")
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--json")
    a = ap.parse_args()
    dev = "cuda"
    load = lambda d: AutoModelForCausalLM.from_pretrained(d, dtype=torch.bfloat16).to(dev).eval()
    target, draft = load(a.target), load(a.draft)
    gen = dict(max_new_tokens=a.new_tokens, min_new_tokens=a.new_tokens, do_sample=False, pad_token_id=0)

    def run(ids, assistant):
        x = torch.tensor([ids], device=dev)
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        with torch.no_grad():
            out = target.generate(x, assistant_model=assistant, **gen) if assistant is not None else target.generate(x, **gen)
        torch.cuda.synchronize()
        return time.perf_counter() - t0, out[0, len(ids):].tolist()

    warm = list("warm up".encode())
    run(warm, None)
    run(warm, draft)
    rows, result = [], {"device": torch.cuda.get_device_name(0), "transformers": __import__("transformers").__version__,
                        "torch": torch.__version__, "new_tokens": a.new_tokens, "prompts_per_domain": a.prompts, "skipped_per_domain": a.skip, "domains": {}}
    for d in a.domains:
        prompts = [json.loads(l)["prompt"] for l in open(os.path.join(a.corpora, f"{d}.prompts.jsonl"))][a.skip : a.skip + a.prompts]
        plain_t, assisted_t, same = [], [], 0
        for p in prompts:
            ids = list(p.encode("utf-8"))
            t1, o1 = run(ids, None)
            t2, o2 = run(ids, draft)
            plain_t.append(t1 * 1e3)
            assisted_t.append(t2 * 1e3)
            same += o1 == o2
        r = {"latency_ms_target_only": sum(plain_t) / len(plain_t), "latency_ms_assisted": sum(assisted_t) / len(assisted_t),
             "assisted_equals_target_only": same, "prompts": len(prompts)}
        r["speedup_assisted"] = r["latency_ms_target_only"] / r["latency_ms_assisted"]
        result["domains"][d] = r
        print(f"{d:8s} HF target-only {r['latency_ms_target_only']:8.1f} ms  assisted {r['latency_ms_assisted']:8.1f} ms  "
              f"speedup {r['speedup_assisted']:.2f}x  same output {same}/{len(prompts)}", flush=True)
    if a.json:
        json.dump(result, open(a.json, "w"), indent=1)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
