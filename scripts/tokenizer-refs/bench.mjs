// The reference side of `osd-bench tokenizer`: encodes the same lines with @huggingface/tokenizers
// and prints one JSON line {load_seconds, encode_seconds, bytes, tokens, checksum}.
//   node bench.mjs NODE_MODULES TOKENIZER_FOLDER LINES_JSON REPEATS
import fs from "fs";
import path from "path";

const [refs, folder, linesPath, repeatsArg] = process.argv.slice(2);
const { Tokenizer } = await import("file://" + path.join(path.resolve(refs), "@huggingface/tokenizers/dist/tokenizers.mjs"));
const lines = JSON.parse(fs.readFileSync(linesPath, "utf8"));
const repeats = Number(repeatsArg || 3);
const t0 = performance.now();
const json = JSON.parse(fs.readFileSync(path.join(folder, "tokenizer.json"), "utf8"));
const configPath = path.join(folder, "tokenizer_config.json");
const tok = new Tokenizer(json, fs.existsSync(configPath) ? JSON.parse(fs.readFileSync(configPath, "utf8")) : {});
const t1 = performance.now();
let tokens = 0, checksum = 0, bytes = 0;
for (const l of lines) bytes += Buffer.byteLength(l, "utf8");
for (const l of lines) tok.encode(l, { add_special_tokens: false });  // warm-up (JIT)
const t2 = performance.now();
for (let r = 0; r < repeats; r++) {
  for (const l of lines) {
    const ids = tok.encode(l, { add_special_tokens: false }).ids;
    if (r === 0) {
      tokens += ids.length;
      for (const id of ids) checksum = (checksum * 31 + id + 1) % 1000000007;
    }
  }
}
const t3 = performance.now();
console.log(JSON.stringify({ load_seconds: (t1 - t0) / 1e3, encode_seconds: (t3 - t2) / 1e3 / repeats, bytes, tokens, checksum }));
