#!/usr/bin/python3
"""Writes the seed inputs of the fuzz targets that have no natural files (tests/fuzz/corpus/
request, tokenizer_codec, records, checkpoint). Run from the repository root; the output is
checked in, so this runs only when a format changes."""
import json
import os
import struct
import zlib

root = "tests/fuzz/corpus"


def write(target, name, data):
    os.makedirs(f"{root}/{target}", exist_ok=True)
    with open(f"{root}/{target}/{name}", "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


# request: frames of the ZeroMQ protocol (docs/PROTOCOL.md)
frames = {
    "generate": {"op": "generate", "id": "q1", "prompt": "def f(", "max_new_tokens": 8, "temperature": 0.7,
                 "top_p": 0.9, "top_k": 4, "seed": 1, "stop": ["\n\n"], "eos": [2], "domain": "python",
                 "stream": True},
    "tokens": {"op": "generate", "tokens": [1, 2, 3], "max_new_tokens": 4},
    "cancel": {"op": "cancel", "id": "q1"},
    "stats": {"op": "stats"},
    "health": {"op": "health"},
    "bad-types": {"op": "generate", "id": 5, "prompt": ["x"], "max_new_tokens": "ten"},
}
for name, frame in frames.items():
    write("request", name, json.dumps(frame))
write("request", "not-json", "{not json")

# tokenizer_codec: first byte = mode (bit 0: tokenizer.json, bit 1: ids), then text or ids
write("tokenizer_codec", "bytes-text", b"\x00Hello, world! \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x98\x80\n")
write("tokenizer_codec", "json-text", b"\x01the quick brown fox 123 <eos> ab\tc")
write("tokenizer_codec", "bytes-ids", b"\x02" + struct.pack("<8H", 72, 105, 0xe6, 0x97, 0xa5, 255, 0, 10))
write("tokenizer_codec", "json-ids", b"\x03" + struct.pack("<6H", 0, 1, 2, 3, 4, 5))


# records: the OSDRECS2 format (models/distillation/record_file.hpp) and the older OSDRECS1
def records_payload(records):
    out = struct.pack("<Q", len(records))
    for r in records:
        out += struct.pack("<qqBBf", r["route"], r["source"], r["greedy"], r["prompt"], r["tail"])
        for key, fmt in (("context", "q"), ("top_ids", "q"), ("top_probs", "f")):
            out += struct.pack("<Q", len(r[key])) + struct.pack(f"<{len(r[key])}{fmt}", *r[key])
    return out


recs = [{"route": 0, "source": 7, "greedy": 1, "prompt": 0, "tail": 0.25, "context": [1, 2, 3],
         "top_ids": [4, 5], "top_probs": [0.5, 0.25]},
        {"route": 1, "source": -1, "greedy": 0, "prompt": 1, "tail": 0.0, "context": [9],
         "top_ids": [], "top_probs": []}]
payload = records_payload(recs)
write("records", "v2", b"OSDRECS2" + struct.pack("<QI", len(payload), zlib.crc32(payload)) + payload)
write("records", "v1", b"OSDRECS1" + payload)
write("records", "empty", b"OSDRECS2" + struct.pack("<QI", 8, zlib.crc32(struct.pack("<Q", 0))) + struct.pack("<Q", 0))


# checkpoint: config.json, "\n--\n", then a safetensors file with every tensor the config implies
def checkpoint(config, drop=None):
    V, H, I, L = config["vocab_size"], config["hidden_size"], config["intermediate_size"], config["num_hidden_layers"]
    nh, kvh = config["num_attention_heads"], config["num_key_value_heads"]
    hd = H // nh
    shapes = {"model.embed_tokens.weight": [V, H], "model.norm.weight": [H], "lm_head.weight": [V, H]}
    for l in range(L):
        p = f"model.layers.{l}."
        shapes.update({p + "input_layernorm.weight": [H], p + "post_attention_layernorm.weight": [H],
                       p + "self_attn.q_proj.weight": [nh * hd, H], p + "self_attn.k_proj.weight": [kvh * hd, H],
                       p + "self_attn.v_proj.weight": [kvh * hd, H], p + "self_attn.o_proj.weight": [H, nh * hd],
                       p + "mlp.gate_proj.weight": [I, H], p + "mlp.up_proj.weight": [I, H],
                       p + "mlp.down_proj.weight": [H, I]})
    if drop:
        shapes.pop(drop)
    header, offset = {}, 0
    for name, shape in shapes.items():
        n = 4
        for d in shape:
            n *= d
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [offset, offset + n]}
        offset += n
    h = json.dumps(header).encode()
    h += b" " * ((8 - (8 + len(h)) % 8) % 8)
    st = struct.pack("<Q", len(h)) + h + bytes(offset)
    return json.dumps(config).encode() + b"\n--\n" + st


cfg = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 8, "hidden_size": 4,
       "intermediate_size": 8, "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 1,
       "max_position_embeddings": 16, "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "tie_word_embeddings": False}
write("checkpoint", "llama", checkpoint(cfg))
write("checkpoint", "missing-tensor", checkpoint(cfg, drop="model.norm.weight"))
qwen = dict(cfg, architectures=["Qwen2ForCausalLM"], model_type="qwen2")
write("checkpoint", "qwen2-no-bias", checkpoint(qwen))
