#!/usr/bin/env python3
"""Parity with Hugging Face transformers: for each architecture variant, osd writes a random
checkpoint (osd-checkpoint random), transformers loads it (AutoModelForCausalLM, float32, eager
attention) and both compute logits for the same tokens; prints max |diff| per variant and exits
non-zero if any exceeds 1e-3. Run on the GPU host, where transformers is installed:

    python3 scripts/hf_parity.py BUILD_DIR [--json OUT]
"""
import json
import os
import subprocess
import sys
import tempfile

import torch
from transformers import AutoModelForCausalLM

# (name, osd-checkpoint random arguments): every architecture osd writes, the config variants,
# and a sharded checkpoint (model.safetensors.index.json + shards).
VARIANTS = [(v, ["--variant", v]) for v in ["llama", "mistral", "qwen2", "mha", "mqa", "tied", "llama-bias",
                                            "llama3-rope", "linear-rope"]]
VARIANTS.append(("llama-sharded", ["--variant", "llama", "--max-shard-bytes", "60000"]))


def main() -> int:
    build = sys.argv[1]
    out_json = sys.argv[sys.argv.index("--json") + 1] if "--json" in sys.argv else None
    tokens = [1, 17, 200, 45, 3, 99, 250, 8, 64, 128, 5, 77]
    rows, worst = [], 0.0
    for variant, args in VARIANTS:
        with tempfile.TemporaryDirectory() as d:
            subprocess.run([f"{build}/osd-checkpoint", "random", "--preset", "tiny", *args,
                            "--seed", "7", "--dir", d], check=True, capture_output=True)
            shards = len([f for f in os.listdir(d) if f.endswith(".safetensors")])
            osd = json.loads(subprocess.run([f"{build}/osd-checkpoint", "logits", "--dir", d, "--tokens",
                                             *map(str, tokens)], check=True, capture_output=True,
                                            text=True).stdout)
            osd_logits = torch.tensor(osd["logits"], dtype=torch.float64).view(*osd["shape"])
            model = AutoModelForCausalLM.from_pretrained(d, torch_dtype=torch.float32, attn_implementation="eager")
            with torch.no_grad():
                hf = model(torch.tensor([tokens])).logits[0].double()
            diff = (hf - osd_logits).abs().max().item()
            worst = max(worst, diff)
            arch = model.config.architectures[0]
            rows.append({"variant": variant, "architecture": arch, "files": shards, "max_abs_diff": diff,
                         "logit_std": hf.std().item()})
            print(f"{variant:14s} {arch:18s} {shards} file(s)  max|diff| {diff:.3e}  (logit std {hf.std().item():.2f})")
    print(f"worst {worst:.3e} ({'PASS' if worst <= 1e-3 else 'FAIL'} at 1e-3)")
    if out_json:
        json.dump({"rows": rows, "worst": worst}, open(out_json, "w"), indent=1)
    return 0 if worst <= 1e-3 else 1


if __name__ == "__main__":
    sys.exit(main())
