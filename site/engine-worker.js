// The engine's Web Worker: the wasm module and the model live here, the page only draws.
// Messages in:  {type: "init"} | {type: "load", url, bytes} | {type: "generate", prompt, n, chat}
//               | {type: "greedy", tokens, n}
// Messages out: {type: "ready", variant, threads} | {type: "progress", loaded, total} | {type: "loaded", ...}
//               | {type: "text", text} | {type: "done", tokens, seconds} | {type: "error", message}
"use strict";

let M = null;
let A = null;
let current = null; // {model, buffer, ctx}
let threads = 1;

importScripts("model-store.js", "engine-boot.js");

async function init() {
  let variant;
  ({ M, A, variant, threads } = await bootEngine());
  postMessage({ type: "ready", variant, threads, version: M.UTF8ToString(M._pm_version()) });
}

async function load(model) {
  if (current) {
    M._pm_context_free(current.ctx);
    A.freeModel(current.model, current.buffer);
    current = null;
  }
  const { buffer, size } = await downloadModel(M, A, model, (loaded, total) =>
    postMessage({ type: "progress", loaded, total }));
  const result = A.loadModel(buffer, size);
  if (result.error) {
    M._pm_buffer_free(buffer);
    throw new Error(result.error);
  }
  const ctx = A.newContext(result.model, { n_ctx: Math.min(2048, M._pm_model_n_ctx_train(result.model)), threads });
  current = { model: result.model, buffer, ctx };
  postMessage({ type: "loaded", url: model.url, n_vocab: M._pm_model_n_vocab(current.model) });
}

function generate(tokens, n) {
  const decoder = new TextDecoder("utf-8"); // stream mode: never emits half a character
  const t0 = performance.now();
  const out = A.greedy(current.model, current.ctx, tokens, n, {
    onToken: (t) => {
      const text = decoder.decode(A.tokenBytes(current.model, t), { stream: true });
      if (text) postMessage({ type: "text", text });
    },
  });
  const tail = decoder.decode();
  if (tail) postMessage({ type: "text", text: tail });
  postMessage({ type: "done", tokens: out, seconds: (performance.now() - t0) / 1000 });
}

function chatPrompt(prompt) {
  // ChatML, as SmolLM2 declares; the chat page renders each model's own template
  return `<|im_start|>user\n${prompt}<|im_end|>\n<|im_start|>assistant\n`;
}

self.onmessage = async ({ data }) => {
  try {
    if (data.type === "init") await init();
    else if (data.type === "load") await load(data.model);
    else if (!current) throw new Error("no model is loaded");
    else if (data.type === "generate") {
      const tokens = data.chat
        ? A.tokenize(current.model, chatPrompt(data.prompt), { addSpecial: false, parseSpecial: true })
        : A.tokenize(current.model, data.prompt);
      generate(tokens, data.n);
    } else if (data.type === "bench") {
      // the engine driven from JS alone: the benchmark's baseline for the Python glue
      postMessage({ type: "done", ...A.bench(current.model, current.ctx, data.n_prompt, data.n_gen) });
    } else if (data.type === "greedy") {
      postMessage({ type: "done", tokens: A.greedy(current.model, current.ctx, data.tokens, data.n, { ignoreEog: true }) });
    } else throw new Error(`unknown message ${data.type}`);
  } catch (e) {
    postMessage({ type: "error", message: String(e && e.message ? e.message : e) });
  }
};
