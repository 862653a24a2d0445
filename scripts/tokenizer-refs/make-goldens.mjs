// Reference token ids for osd's tokenizer parity test (tests/test_tokenizer.cpp).
//
//   node scripts/tokenizer-refs/make-goldens.mjs $(bash scripts/fetch-tokenizer-refs.sh) tests/data/tokenizers
//
// Writes texts.json (the lines, the same for every tokenizer) and NAME.jsonl for each of llama3,
// qwen3, llama2 and gpt2: one line per text, {"ids": [...]} plus "decoded" where decoding the
// ids does not give the text back. Ids come from @huggingface/tokenizers (encode without special
// tokens, decode without skipping them). GPT-2 ships encoder.json + vocab.bpe, not a
// tokenizer.json: the script builds the equivalent tokenizer.json for the reference, and also
// counts how often gpt-3-encoder's own encoder agrees (it uses JavaScript's \s, Hugging Face
// uses Oniguruma's). The texts are generated from a fixed seed, so a rerun gives the same files.
import fs from "fs";
import path from "path";
import { createRequire } from "module";

const [refs, out] = process.argv.slice(2).map((p) => p && path.resolve(p));
if (!refs || !out) {
  console.error("usage: make-goldens.mjs NODE_MODULES OUT_DIR");
  process.exit(2);
}
const { Tokenizer } = await import("file://" + path.join(refs, "@huggingface/tokenizers/dist/tokenizers.mjs"));
const require = createRequire(path.join(refs, "x.js"));

// ---- texts ------------------------------------------------------------------------------------
let seed = 20261126;
const rand = () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648);
const pick = (a) => a[Math.floor(rand() * a.length)];
const int = (lo, hi) => lo + Math.floor(rand() * (hi - lo + 1));
const cp = (lo, hi) => String.fromCodePoint(int(lo, hi));
const repeat = (f, n) => Array.from({ length: n }, f).join("");

const prose = [
  "The quick brown fox jumps over the lazy dog.", "It was the best of times, it was the worst of times.",
  "Speculative decoding lets a small draft model propose tokens that a larger model verifies.",
  "We'll see; they're sure it's fine, aren't they? I'd say you've got it.", "DON'T SHOUT, it's LOUD'S fault!",
  "In 1969, Apollo 11 landed on the Moon.", "Mr. O'Neil paid $3.50 for 2 coffees (and a bagel).",
  "Ceci n'est pas une pipe — c'était déjà là, à côté de l'église.", "Über den Wolken muß die Freiheit wohl grenzenlos sein.",
  "¿Dónde está la biblioteca? ¡Aquí!", "Съешь же ещё этих мягких французских булок, да выпей чаю.",
  "Τάχιστη αλώπηξ βαφής ψημένη γη, δρασκελίζει υπέρ νωθρού κυνός.", "الخط العربي جميل جداً", "שלום עולם, מה שלומך?",
  "हिन्दी भाषा में लिखा गया वाक्य।", "ภาษาไทยไม่มีช่องว่างระหว่างคำ", "다람쥐 헌 쳇바퀴에 타고파", "我能吞下玻璃而不伤身体。",
  "いろはにほへと ちりぬるを わかよたれそ", "Tiếng Việt có nhiều dấu thanh.", "naïve coöperation, façade, résumé",
  "e-mail: someone@example.com, url: https://example.org/a/b?c=d&e=f#g", "#hashtag @mention ~tilde ^caret",
];
const code = [
  "int main(int argc, char** argv) { return argc > 1 ? 0 : 1; }", "def f(x):\n    return [y * 2 for y in x if y % 3]\n",
  "for (auto& [k, v] : map) std::cout << k << '=' << v << \"\\n\";", "const x = await fetch(`/api/${id}`).then(r => r.json());",
  "fn main() -> Result<(), Box<dyn Error>> {\n\tlet v: Vec<u8> = vec![0x1f, 0xff];\n\tOk(())\n}",
  "if [ -z \"$HOME\" ]; then echo 'no home' >&2; exit 1; fi", "{\"key\": [1, 2.5, null, true], \"nested\": {\"a\": \"b\"}}",
  "SELECT name, COUNT(*) FROM users WHERE age >= 18 GROUP BY name;", "x+=1;y-=2;z*=3;w/=4;a%=5;b<<=1;c>>=2;d&&=e||f",
  "#include <vector>\n#define MAX(a,b) ((a)>(b)?(a):(b))\n", "    \t  indented\t\ttabs   \n\n\n",
  "class Foo(Base):\r\n    pass\r\n", "<div class=\"a\"><span>&nbsp;&lt;tag&gt;</span></div>", "a_b__c___d----e====f",
];
const emoji = ["😀", "👍🏽", "👨‍👩‍👧‍👦", "🇫🇷", "🏳️‍🌈", "1️⃣", "❤️", "🤖", "🧑🏿‍💻", "✨", "🔥", "🙂🙃", "🫠", "☃", "✔"];
const specials = ["<|endoftext|>", "<s>", "</s>", "<unk>", "<|begin_of_text|>", "<|eot_id|>", "<|im_start|>", "<|im_end|>",
                  "<think>", "<|endof", "<0x41>", "Ġ", "▁", "Ċ", "<pad>"];
const odd = ["\uFFFD", "Ã©", "â€™", "\\xff\\xfe", "\u0000", "\u0007", "\u001b[31m", "\u007f", "\u200b", "\u200d", "\u200c",
             "\u202e", "\uFEFF", "\u00a0", "\u3000", "\u2009", "\u0085", "\u2028", "\uE000", "\uFFFF", "\u{10FFFF}", "\u{1D11E}"];
const whitespace = () => repeat(() => pick([" ", " ", "\t", "\n", "\r\n", "\u00a0", "  ", "\n\n"]), int(1, 8));
const number = () => pick([
  () => String(int(0, 9)), () => String(int(0, 99999999)), () => `${int(0, 999)}.${int(0, 99999)}`,
  () => `${int(1, 9)},${int(100, 999)},${int(100, 999)}.${int(10, 99)}`, () => `${int(1, 9)}e-${int(1, 30)}`,
  () => `0x${int(0, 2 ** 30).toString(16)}`, () => `${int(1990, 2030)}-${int(1, 12)}-${int(1, 28)}`,
  () => `+1 (${int(200, 999)}) ${int(200, 999)}-${int(1000, 9999)}`, () => repeat(() => String(int(0, 9)), int(10, 40)),
  () => `${int(0, 100)}%`, () => `-${int(1, 1000)}`, () => "١٢٣٤ ٥٦", () => "½ ⅓ ² ³ Ⅻ",
])();
const cjk = () => repeat(() => pick([() => cp(0x4e00, 0x9fff), () => cp(0x3041, 0x3096), () => cp(0x30a1, 0x30fa),
                                     () => cp(0xac00, 0xd7a3), () => "，", () => "。"])(), int(1, 30));
const combining = () => repeat(() => pick(["a", "e", "o", "n", "u", "A", "ᄀ", "z"]) +
                                      repeat(() => cp(0x300, 0x36f), int(1, 3)), int(1, 6)) +
                        pick(["", " cafe\u0301", " \u1100\u1161\u11a8", " Å Å", " ﬁ ﬀ", " ｆｕｌｌ"]);
const anyChar = () => {
  for (;;) {
    const c = int(1, 0x10ffff);
    if (c < 0xd800 || c > 0xdfff) return String.fromCodePoint(c);
  }
};
const categories = [
  () => pick(prose), () => pick(code), number, whitespace, cjk, () => repeat(() => pick(emoji), int(1, 5)), combining,
  () => pick(odd), () => pick(specials), () => repeat(anyChar, int(1, 8)),
  () => pick(prose).split(" ").map((w) => (rand() < 0.3 ? w.toUpperCase() : w)).join(pick([" ", "  ", "\t", "\n"])),
];
const texts = [];
for (let i = 0; i < 2200; i++) {
  let t;
  if (i < 11 * 40) t = categories[i % 11]();  // every category on its own, 40 times
  else t = repeat(() => pick(categories)(), int(1, 6));
  if (rand() < 0.1) t = " " + t;
  if (rand() < 0.05) t = t + " ";
  texts.push(t);
}
texts.push("", " ", "  ", "\n", "a", repeat(() => pick(prose) + " ", 40), repeat(() => "a", 3000), repeat(() => " ", 1000),
           repeat(() => cp(0x4e00, 0x9fff), 2000), repeat(anyChar, 500));

// ---- tokenizers -------------------------------------------------------------------------------
const readJson = (p) => JSON.parse(fs.readFileSync(p, "utf8"));
const lenml = (name) => {
  const dir = path.join(refs, `@lenml/tokenizer-${name}/models`);
  const config = fs.existsSync(path.join(dir, "tokenizer_config.json")) ? readJson(path.join(dir, "tokenizer_config.json")) : {};
  return new Tokenizer(readJson(path.join(dir, "tokenizer.json")), config);
};
const gpt2Json = () => {
  const dir = path.join(refs, "gpt-3-encoder");
  const vocab = readJson(path.join(dir, "encoder.json"));
  const merges = fs.readFileSync(path.join(dir, "vocab.bpe"), "utf8").split("\n").slice(1).filter((l) => l.trim().length);
  return {
    version: "1.0", added_tokens: [{ id: 50256, content: "<|endoftext|>", single_word: false, lstrip: false, rstrip: false,
                                     normalized: false, special: true }],
    // ByteLevel(use_regex) in the reference splits with JavaScript's \s; Hugging Face (Rust, and
    // GPT-2's own Python) split with Unicode White_Space (U+0085 yes, U+FEFF no). The same split
    // as an explicit Split step is translated to Oniguruma's semantics by the reference.
    normalizer: null,
    pre_tokenizer: { type: "Sequence", pretokenizers: [
      { type: "Split", pattern: { Regex: "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+" },
        behavior: "Isolated", invert: false },
      { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: false }] },
    post_processor: null, decoder: { type: "ByteLevel", add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: { type: "BPE", dropout: null, unk_token: null, continuing_subword_prefix: "", end_of_word_suffix: "",
             fuse_unk: false, byte_fallback: false, vocab, merges },
  };
};
const tokenizers = {
  llama3: lenml("llama3"), qwen3: lenml("qwen3"), llama2: lenml("llama2"), gpt2: new Tokenizer(gpt2Json(), { clean_up_tokenization_spaces: false }),  // no tokenizer_config.json: osd reads false
};

fs.mkdirSync(out, { recursive: true });
fs.writeFileSync(path.join(out, "texts.json"), JSON.stringify(texts, null, 0).replace(/","/g, "\",\n\""));
const summary = {};
for (const [name, tok] of Object.entries(tokenizers)) {
  const lines = [];
  let roundTrips = 0;
  for (const text of texts) {
    const ids = tok.encode(text, { add_special_tokens: false }).ids;
    const decoded = ids.length ? tok.decode(ids, { skip_special_tokens: false }) : "";
    const row = { ids };
    if (decoded === text) roundTrips++;
    else row.decoded = decoded;
    lines.push(JSON.stringify(row));
  }
  fs.writeFileSync(path.join(out, `${name}.jsonl`), lines.join("\n") + "\n");
  summary[name] = { texts: texts.length, round_trips: roundTrips };
}
// gpt-3-encoder's own encoder, for the record (it is not the golden).
const gpt3 = require("gpt-3-encoder");
const gpt2Rows = fs.readFileSync(path.join(out, "gpt2.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l).ids);
summary.gpt2.gpt_3_encoder_agrees = texts.filter((t, i) => JSON.stringify(gpt3.encode(t)) === JSON.stringify(gpt2Rows[i])).length;
fs.writeFileSync(path.join(out, "summary.json"), JSON.stringify(summary, null, 1) + "\n");
console.log(JSON.stringify(summary));
