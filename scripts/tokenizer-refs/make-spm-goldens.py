#!/usr/bin/python3
"""Reference ids for osd's native SentencePiece .model reader, from Debian's libsentencepiece.

    apt-get install sentencepiece python3-sentencepiece
    /usr/bin/python3 scripts/tokenizer-refs/make-spm-goldens.py tests/data/tokenizers

Trains a small Llama-style BPE model (byte fallback, identity normalization, whitespace kept,
split digits, two user-defined symbols) on the docs, the model sources and the first 1,500 test
texts, saves it as sentencepiece-bpe.model, and writes spm.jsonl: for each line of texts.json,
{"ids": [...]} plus "decoded" where libsentencepiece's decode differs from the text.
"""
import glob
import json
import os
import subprocess
import sys
import tempfile

import sentencepiece as spm

out = sys.argv[1]
root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
texts = json.load(open(os.path.join(out, "texts.json")))
model = os.path.join(out, "sentencepiece-bpe.model")
if "--keep-model" not in sys.argv or not os.path.exists(model):
    with tempfile.TemporaryDirectory() as d:
        corpus = os.path.join(d, "corpus.txt")
        with open(corpus, "w") as f:
            for p in sorted(glob.glob(os.path.join(root, "docs/*.md")) + glob.glob(os.path.join(root, "models/*.cpp"))):
                f.write(open(p).read())
            f.write("\n".join(t.replace("\n", " ") for t in texts[:1500] if t.strip()))
        subprocess.run(["spm_train", f"--input={corpus}", f"--model_prefix={d}/m", "--model_type=bpe", "--vocab_size=3000",
                        "--byte_fallback=true", "--normalization_rule_name=identity", "--remove_extra_whitespaces=false",
                        "--split_digits=true", "--allow_whitespace_only_pieces=true", "--user_defined_symbols=<|user|>,<tool>",
                        "--character_coverage=0.99", "--max_sentence_length=100000", "--num_threads=1"],
                       check=True, capture_output=True)
        os.replace(f"{d}/m.model", model)
sp = spm.SentencePieceProcessor(model_file=model)
rows, round_trips = [], 0
for t in texts:
    ids = sp.encode(t)
    decoded = sp.decode(ids)
    row = {"ids": ids}
    if decoded == t:
        round_trips += 1
    else:
        row["decoded"] = decoded
    rows.append(json.dumps(row))
open(os.path.join(out, "spm.jsonl"), "w").write("\n".join(rows) + "\n")
print(json.dumps({"spm": {"texts": len(texts), "round_trips": round_trips, "vocab": sp.get_piece_size()}}))
