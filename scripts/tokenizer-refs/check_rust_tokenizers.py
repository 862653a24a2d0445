#!/usr/bin/env python3
"""Checks osd's tokenizer goldens against Hugging Face's Rust `tokenizers` (the library behind
transformers' fast tokenizers), where it is installed (the GPU host). The goldens come from
@huggingface/tokenizers (JavaScript) and osd matches them exactly (tests/text); this shows the
JavaScript reference and the Rust library agree on the same lines.

    python3 scripts/tokenizer-refs/check_rust_tokenizers.py TOKENIZER_DIR tests/data/tokenizers [--json OUT]

TOKENIZER_DIR holds llama3/, qwen3/, llama2/ (tokenizer.json) and gpt2/ (encoder.json, vocab.bpe).
"""
import json
import os
import sys

import tokenizers
from tokenizers import Tokenizer, decoders, models, pre_tokenizers


def gpt2(folder):
    vocab = json.load(open(os.path.join(folder, "encoder.json")))
    merges = [tuple(l.split(" ")) for l in open(os.path.join(folder, "vocab.bpe"), encoding="utf8").read().split("\n")[1:] if l.strip()]
    tok = Tokenizer(models.BPE(vocab, merges))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(["<|endoftext|>"])
    return tok


def main():
    tok_dir, gold_dir = sys.argv[1], sys.argv[2]
    texts = json.load(open(os.path.join(gold_dir, "texts.json"), encoding="utf8"))
    report, bad = {"tokenizers_version": tokenizers.__version__}, 0
    for name in ["llama3", "qwen3", "llama2", "gpt2"]:
        tok = gpt2(os.path.join(tok_dir, name)) if name == "gpt2" else Tokenizer.from_file(os.path.join(tok_dir, name, "tokenizer.json"))
        golden = [json.loads(l)["ids"] for l in open(os.path.join(gold_dir, f"{name}.jsonl"))]
        differ = [i for i, t in enumerate(texts) if tok.encode(t, add_special_tokens=False).ids != golden[i]]
        report[name] = {"lines": len(texts), "ids_differ": len(differ), "first_differing": differ[:5]}
        bad += len(differ)
        print(f"{name:7s} {len(texts)} lines, {len(differ)} differ from the goldens (= osd)" +
              (f": e.g. {[texts[i][:40] for i in differ[:3]]}" if differ else ""))
    if "--json" in sys.argv:
        json.dump(report, open(sys.argv[sys.argv.index("--json") + 1], "w"), indent=1)
    return 0 if bad == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
