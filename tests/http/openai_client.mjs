// The HTTP front end driven by the official `openai` client (and raw sockets for what a client
// library never sends), against osd-serve on the default models; tests/http_openai.sh starts the
// server. Greedy output over HTTP must equal the ZeroMQ output (osd-client) for the same prompt.
//
//   node openai_client.mjs NODE_MODULES HTTP_BASE ZMQ_ENDPOINT OSD_CLIENT
import { createRequire } from "module";
import { execFileSync } from "child_process";
import net from "net";
import path from "path";

const [modules, base, zmqEndpoint, osdClient] = process.argv.slice(2);
const require = createRequire(path.join(modules, "noop.js"));
const OpenAI = require("openai");
const client = new OpenAI({ apiKey: "unused", baseURL: base + "/v1", maxRetries: 0, timeout: 120000 });

let failures = 0, checks = 0;
function check(ok, what, detail = "") {
  ++checks;
  if (!ok) {
    ++failures;
    console.log(`FAIL ${what}${detail ? ": " + detail : ""}`);
  }
}
function same(a, b, what) {
  check(a === b, what, `${JSON.stringify(a)} != ${JSON.stringify(b)}`);
}
async function test(name, f) {
  const before = failures;
  try {
    await f();
  } catch (e) {
    ++failures;
    console.log(`FAIL ${name}: threw ${e.constructor.name}: ${e.message}`);
  }
  console.log(`${failures === before ? "ok  " : "FAIL"} ${name}`);
}

// The ZeroMQ front end's greedy text for a prompt (osd-client, one JSON reply per line).
function zmqText(prompt, maxTokens) {
  const out = execFileSync(osdClient, [prompt, "--endpoint", zmqEndpoint, "--max-new-tokens", String(maxTokens),
                                       "--temperature", "0", "--json"], { encoding: "utf8" });
  const lines = out.trim().split("\n");
  const done = JSON.parse(lines[lines.length - 1]);
  if (done.event !== "done") throw new Error("zmq: " + lines[lines.length - 1]);
  return done.text;
}

// A raw HTTP exchange: write `request` (string or Buffer pieces with pauses), return what came back
// before the server closed or `waitMs` passed.
function raw(pieces, { waitMs = 5000, pauseMs = 0 } = {}) {
  return new Promise((resolve) => {
    const url = new URL(base);
    const sock = net.connect(Number(url.port), url.hostname);
    let got = "", closed = false;
    sock.on("data", (d) => (got += d.toString("utf8")));
    sock.on("error", () => {});
    sock.on("close", () => {
      closed = true;
      resolve({ got, closed: true });
    });
    sock.on("connect", async () => {
      for (const p of pieces) {
        sock.write(p);
        if (pauseMs) await new Promise((r) => setTimeout(r, pauseMs));
      }
      setTimeout(() => {
        if (!closed) {
          sock.destroy();
          resolve({ got, closed: false });
        }
      }, waitMs);
    });
  });
}
function post(pathName, body, extraHeaders = "") {
  return `POST ${pathName} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n${extraHeaders}` +
         `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`;
}
function statusOf(response) {
  const m = /^HTTP\/1\.1 (\d+)/.exec(response);
  return m ? Number(m[1]) : 0;
}
async function metrics() {
  const r = await fetch(base + "/metrics");
  return await r.text();
}
function metric(text, series) {
  for (const line of text.split("\n"))
    if (line.startsWith(series + " ")) return Number(line.slice(series.length + 1));
  return undefined;
}
async function normalRequestWorks(what) {
  const r = await client.completions.create({ model: "default", prompt: "ok", max_tokens: 3, temperature: 0 });
  same(r.usage.completion_tokens, 3, `${what}: a normal request afterwards`);
}

const prompts = ["def fibonacci(", "int main(void) {", "In the beginning", "import numpy as np\n"];
const zmq = new Map(prompts.map((p) => [p, zmqText(p, 24)]));

await test("models: the target, with its draft routes", async () => {
  const list = await client.models.list();
  same(list.data.length, 1, "one model");
  same(list.data[0].id, "default", "model id");
  check(Array.isArray(list.data[0].osd.draft_routes) && list.data[0].osd.draft_routes.length === 1,
        "draft routes as metadata", JSON.stringify(list.data[0]));
  same(list.data[0].osd.chat_template, "plain", "the default pair has no template: plain");
});

await test("completions: greedy text equals the ZeroMQ front end's", async () => {
  for (const p of prompts) {
    const r = await client.completions.create({ model: "default", prompt: p, max_tokens: 24, temperature: 0 });
    same(r.choices[0].text, zmq.get(p), `completion of ${JSON.stringify(p)}`);
    same(r.choices[0].finish_reason, "length", "finish_reason");
    same(r.usage.completion_tokens, 24, "usage.completion_tokens");
    same(r.usage.prompt_tokens, Buffer.byteLength(p), "usage.prompt_tokens (bytes)");
    check(r.osd && r.osd.route === "default" && r.osd.draft_tokens >= r.osd.accepted_tokens,
          "osd extension", JSON.stringify(r.osd));
  }
});

await test("completions: streamed chunks add up to the same text, usage last", async () => {
  const stream = await client.completions.create({ model: "default", prompt: prompts[0], max_tokens: 24,
                                                   temperature: 0, stream: true,
                                                   stream_options: { include_usage: true } });
  let text = "", finish = null, usage = null, chunks = 0;
  for await (const chunk of stream) {
    ++chunks;
    if (chunk.usage) usage = chunk.usage;
    if (chunk.choices.length) {
      text += chunk.choices[0].text;
      if (chunk.choices[0].finish_reason) finish = chunk.choices[0].finish_reason;
    }
  }
  same(text, zmq.get(prompts[0]), "streamed text");
  same(finish, "length", "finish_reason");
  check(usage && usage.completion_tokens === 24, "usage chunk", JSON.stringify(usage));
  check(chunks >= 3, "several chunks", String(chunks));
});

await test("chat: the plain template's prompt, streamed or not, equals ZeroMQ on the rendered text", async () => {
  const messages = [{ role: "system", content: "Answer in code." }, { role: "user", content: "def add(a, b):" }];
  const rendered = "system: Answer in code.\nuser: def add(a, b):\nassistant:";
  const expected = zmqText(rendered, 20);
  const r = await client.chat.completions.create({ model: "default", messages, max_tokens: 20, temperature: 0 });
  same(r.object, "chat.completion", "object");
  same(r.choices[0].message.role, "assistant", "role");
  same(r.choices[0].message.content, expected, "chat content");
  same(r.usage.prompt_tokens, Buffer.byteLength(rendered), "prompt tokens of the rendered template");
  const stream = await client.chat.completions.create({ model: "default", messages, max_tokens: 20,
                                                        temperature: 0, stream: true });
  let content = "", role = null;
  for await (const chunk of stream) {
    const delta = chunk.choices[0]?.delta ?? {};
    if (delta.role) role = delta.role;
    if (delta.content) content += delta.content;
  }
  same(role, "assistant", "streamed role");
  same(content, expected, "streamed chat content");
});

await test("concurrent: 16 requests at once, each equals its ZeroMQ answer", async () => {
  const jobs = [];
  for (let i = 0; i < 16; ++i) {
    const p = prompts[i % prompts.length];
    if (i % 2) {
      jobs.push(client.completions.create({ model: "default", prompt: p, max_tokens: 24, temperature: 0 })
                      .then((r) => [p, r.choices[0].text]));
    } else {
      jobs.push((async () => {
        const s = await client.completions.create({ model: "default", prompt: p, max_tokens: 24, temperature: 0,
                                                    stream: true });
        let t = "";
        for await (const c of s) t += c.choices[0]?.text ?? "";
        return [p, t];
      })());
    }
  }
  let wrong = 0;
  for (const [p, t] of await Promise.all(jobs)) wrong += t !== zmq.get(p);
  same(wrong, 0, "answers that differ from ZeroMQ's");
});

await test("disconnect: aborting a stream cancels its request", async () => {
  const before = metric(await metrics(), 'osd_requests_finished_total{reason="cancelled"}') ?? 0;
  const stream = await client.completions.create({ model: "default", prompt: "Once upon a time", max_tokens: 500,
                                                   temperature: 0.8, stream: true });
  let got = 0;
  for await (const chunk of stream) {
    got += chunk.choices[0]?.text?.length ?? 0;
    if (got > 0) break;  // leaving the loop aborts the request
  }
  let after = before, inFlight = -1;
  for (let i = 0; i < 600; ++i) {  // up to a minute
    const m = await metrics();
    after = metric(m, 'osd_requests_finished_total{reason="cancelled"}') ?? 0;
    inFlight = metric(m, "osd_requests_in_flight");
    if (after > before && inFlight === 0) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  same(after, before + 1, "requests finished as cancelled");
  same(inFlight, 0, "requests in flight afterwards");
});

await test("errors through the client: unknown model, bad parameters, n > 1", async () => {
  const expectError = async (what, f, status, param) => {
    try {
      await f();
      check(false, what, "succeeded");
    } catch (e) {
      same(e.status, status, `${what}: status`);
      if (param !== undefined) same(e.error?.param ?? e.param, param, `${what}: param`);
    }
  };
  await expectError("unknown model", () => client.completions.create({ model: "gpt-4", prompt: "x" }), 404);
  await expectError("temperature 5",
                    () => client.completions.create({ model: "default", prompt: "x", temperature: 5 }), 400,
                    "temperature");
  await expectError("n = 2", () => client.completions.create({ model: "default", prompt: "x", n: 2 }), 400, "n");
  await expectError("logprobs", () => client.completions.create({ model: "default", prompt: "x", logprobs: 2 }),
                    400, "logprobs");
  await expectError("empty messages",
                    () => client.chat.completions.create({ model: "default", messages: [] }), 400, "messages");
  await normalRequestWorks("after client errors");
});

await test("raw bad input: each gets its error, the server keeps serving", async () => {
  let r = await raw([post("/v1/completions", '{"prompt": "x", ')]);
  same(statusOf(r.got), 400, "malformed JSON");
  check(r.got.includes('"code":"invalid_json"'), "malformed JSON: error object", r.got);
  r = await raw([post("/v1/completions", JSON.stringify({ prompt: "x", max_tokens: "many" }))]);
  same(statusOf(r.got), 400, "wrong type");
  check(r.got.includes('"param":"max_tokens"'), "wrong type names max_tokens", r.got);
  r = await raw([post("/v1/completions", JSON.stringify({ prompt: "x", max_new_tokens: 4 }))]);
  check(statusOf(r.got) === 400 && r.got.includes("did you mean 'max_tokens'"), "unknown field", r.got);
  r = await raw([post("/v1/completions", JSON.stringify({ prompt: "x", max_tokens: 1e12, temperature: -3 }))]);
  same(statusOf(r.got), 400, "absurd values");
  r = await raw([post("/v1/completions", JSON.stringify({ prompt: "x".repeat(200000) }))]);
  same(statusOf(r.got), 413, "oversize body");
  // A chunked oversize body.
  const chunk = "x".repeat(60000);
  const chunked = "POST /v1/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" +
                  [1, 2, 3].map(() => chunk.length.toString(16) + "\r\n" + chunk + "\r\n").join("");
  r = await raw([chunked]);
  same(statusOf(r.got), 413, "oversize chunked body");
  r = await raw(["GET /v1/nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"]);
  same(statusOf(r.got), 404, "unknown route");
  r = await raw(["NONSENSE\r\n\r\n"], { waitMs: 1000 });
  same(statusOf(r.got), 400, "not HTTP");
  // A slow client: half a request, then silence past osd.http-timeout-s: the server hangs up.
  r = await raw(["POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"pro"], { waitMs: 8000 });
  check(r.closed, "a stalled body is disconnected");
  // A client that sends half its body and leaves.
  r = await raw(["POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"pro"], { waitMs: 50 });
  // A client that asks for a stream and never reads it (its socket stays open).
  const url = new URL(base);
  const lazy = net.connect(Number(url.port), url.hostname);
  lazy.on("error", () => {});
  lazy.write(post("/v1/completions", JSON.stringify({ prompt: "x", max_tokens: 300, stream: true })));
  lazy.pause();
  await normalRequestWorks("while a client does not read");
  lazy.destroy();
  await normalRequestWorks("after raw bad input");
});

await test("metrics: Prometheus text that agrees with the stats", async () => {
  const text = await metrics();
  check(text.includes("# TYPE osd_time_to_first_token_seconds histogram"), "TTFT histogram");
  check(text.includes('osd_acceptance_length_bucket{route="default",draft_version="'), "acceptance lengths");
  check(!text.includes('draft="0"'), "no index labels");
  const stats = JSON.parse(execFileSync(osdClient, ["--endpoint", zmqEndpoint, "--op", "stats", "--json"],
                                        { encoding: "utf8" }).trim().split("\n").pop()).stats;
  const route = stats.metrics.routes.default;
  same(metric(text, 'osd_num_draft_tokens_total{route="default"}'), route.num_draft_tokens, "draft tokens");
  same(metric(text, 'osd_acceptance_rate{route="default"}'), route.acceptance_rate, "acceptance gauge");
  check(route.acceptance_rate > 0, "acceptance is not 0", String(route.acceptance_rate));
  const health = await fetch(base + "/health");
  same(health.status, 200, "health");
});

console.log(`${checks - failures}/${checks} checks passed`);
process.exit(failures ? 1 : 0);
