// The engine's Web Worker: the wasm module and the model live here, the page only draws.
// Messages in:  {id, type: "init"} | {id, type: "load", model} | {id, type: "generate", prompt, n, chat}
//               | {id, type: "greedy", tokens, n} | {id, type: "bench", n_prompt, n_gen}
// Messages out, each with the id of the request it answers: {type: "ready", variant, threads}
//               | {type: "progress", loaded, total} | {type: "loaded", ...} | {type: "text", text}
//               | {type: "done", tokens, seconds} | {type: "error", message}
"use strict";

let M = null;
let A = null;
let current = null; // {model, buffer, ctx}
let threads = 1;

importScripts("model-store.js", "engine-boot.js");

async function init(id) {
  let variant;
  ({ M, A, variant, threads } = await bootEngine());
  postMessage({ type: "ready", id, variant, threads, version: M.UTF8ToString(M._pm_version()) });
}

async function load(id, model) {
  if (current) {
    M._pm_context_free(current.ctx);
    A.freeModel(current.model, current.buffer);
    current = null;
  }
  const { buffer, size } = await downloadModel({ M, A }, model, (loaded, total) =>
    postMessage({ type: "progress", id, loaded, total }));
  const result = A.loadModel(buffer, size);
  if (result.error) {
    M._pm_buffer_free(buffer);
    throw new Error(result.error);
  }
  let ctx;
  try {
    ctx = A.newContext(result.model, { n_ctx: Math.min(2048, M._pm_model_n_ctx_train(result.model)), threads });
  } catch (e) {
    A.freeModel(result.model, buffer); // no context: nothing will ever use this model
    throw e;
  }
  current = { model: result.model, buffer, ctx };
  postMessage({ type: "loaded", id, url: model.url, n_vocab: M._pm_model_n_vocab(current.model) });
}

function generate(id, tokens, n) {
  const decoder = new TextDecoder("utf-8"); // stream mode: never emits half a character
  const t0 = performance.now();
  const out = A.greedy(current.model, current.ctx, tokens, n, {
    onToken: (t) => {
      const text = decoder.decode(A.tokenBytes(current.model, t), { stream: true });
      if (text) postMessage({ type: "text", id, text });
    },
  });
  const tail = decoder.decode();
  if (tail) postMessage({ type: "text", id, text: tail });
  postMessage({ type: "done", id, tokens: out, seconds: (performance.now() - t0) / 1000 });
}

function chatPrompt(prompt) {
  // ChatML, as SmolLM2 declares; the chat page renders each model's own template
  return `<|im_start|>user\n${prompt}<|im_end|>\n<|im_start|>assistant\n`;
}

// Requests run one at a time, in the order they came: a load never happens under a generation.
let serial = Promise.resolve();

async function handle(data) {
  const id = data.id;
  if (data.type === "init") await init(id);
  else if (data.type === "load") await load(id, data.model);
  else if (!current) throw new Error("no model is loaded");
  else if (data.type === "generate") {
    const tokens = data.chat
      ? A.tokenize(current.model, chatPrompt(data.prompt), { addSpecial: false, parseSpecial: true })
      : A.tokenize(current.model, data.prompt);
    generate(id, tokens, data.n);
  } else if (data.type === "bench") {
    // the engine driven from JS alone: the benchmark's baseline for the Python glue
    postMessage({ type: "done", id, ...A.bench(current.model, current.ctx, data.n_prompt, data.n_gen) });
  } else if (data.type === "greedy") {
    postMessage({ type: "done", id, tokens: A.greedy(current.model, current.ctx, data.tokens, data.n, { ignoreEog: true }) });
  } else throw new Error(`unknown message ${data.type}`);
}

self.onmessage = ({ data }) => {
  serial = serial.then(() => handle(data)).catch((e) => {
    postMessage({ type: "error", id: data.id, message: String(e && e.message ? e.message : e) });
  });
};
