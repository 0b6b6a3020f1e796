// The engine's Web Worker: the wasm module and the model live here, the page only draws.
// Messages in:  {type: "init"} | {type: "load", url, bytes} | {type: "generate", prompt, n, chat}
//               | {type: "greedy", tokens, n}
// Messages out: {type: "ready", variant, threads} | {type: "progress", loaded, total} | {type: "loaded", ...}
//               | {type: "text", text} | {type: "done", tokens, seconds} | {type: "error", message}
"use strict";

let M = null;
let A = null;
let current = null; // {model, buffer, ctx}

const threaded = self.crossOriginIsolated && typeof SharedArrayBuffer !== "undefined";
const variant = threaded ? "mt" : "st";
// leave a core for the page where there are many; two threads even on two cores (the page is idle meanwhile)
const cores = self.navigator.hardwareConcurrency || 2;
const threads = threaded && cores >= 2 ? Math.max(2, Math.min(4, cores - 1)) : 1;

const BOOT_TIMEOUT_MS = 60000;

async function init() {
  const script = new URL(`wasm/pocketmind-${variant}.js`, self.location.href).href;
  importScripts(script, "wasm/pocketmind_api.js");
  let abort;
  const aborted = new Promise((_, reject) => (abort = reject));
  const timer = setTimeout(() => abort(new Error("the engine did not start within a minute")), BOOT_TIMEOUT_MS);
  M = await Promise.race([
    createPocketmind({
      locateFile: (file) => new URL(`wasm/${file}`, self.location.href).href,
      mainScriptUrlOrBlob: script, // where the pthread workers load the module from
      onAbort: (what) => abort(new Error(`the engine stopped: ${what}`)),
    }),
    aborted,
  ]);
  clearTimeout(timer);
  M._pm_set_log_level(1);
  A = pocketmindApi(M);
  postMessage({ type: "ready", variant: `wasm-${variant}`, threads, version: M.UTF8ToString(M._pm_version()) });
}

// Download straight into wasm memory, reporting progress; the model then uses those bytes in place.
async function load(url, expected) {
  if (current) {
    M._pm_context_free(current.ctx);
    A.freeModel(current.model, current.buffer);
    current = null;
  }
  const response = await fetch(url);
  if (!response.ok) throw new Error(`download of ${url} failed: HTTP ${response.status}`);
  const total = Number(response.headers.get("Content-Length")) || expected;
  if (!total) throw new Error(`the size of ${url} is unknown`);
  const buffer = A.allocModelBuffer(total);
  let loaded = 0;
  try {
    const reader = response.body.getReader();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      if (loaded + value.length > total) throw new Error(`${url} is larger than its announced ${total} bytes`);
      M.HEAPU8.set(value, buffer + loaded);
      loaded += value.length;
      postMessage({ type: "progress", loaded, total });
    }
    if (loaded !== total) throw new Error(`${url} ended after ${loaded} of ${total} bytes`);
    const result = A.loadModel(buffer, total);
    if (result.error) throw new Error(result.error);
    const ctx = A.newContext(result.model, { n_ctx: Math.min(2048, M._pm_model_n_ctx_train(result.model)), threads });
    current = { model: result.model, buffer, ctx };
  } catch (e) {
    M._pm_buffer_free(buffer);
    throw e;
  }
  postMessage({ type: "loaded", url, n_vocab: M._pm_model_n_vocab(current.model) });
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
    else if (data.type === "load") await load(data.url, data.bytes);
    else if (!current) throw new Error("no model is loaded");
    else if (data.type === "generate") {
      const tokens = data.chat
        ? A.tokenize(current.model, chatPrompt(data.prompt), { addSpecial: false, parseSpecial: true })
        : A.tokenize(current.model, data.prompt);
      generate(tokens, data.n);
    } else if (data.type === "greedy") {
      postMessage({ type: "done", tokens: A.greedy(current.model, current.ctx, data.tokens, data.n, { ignoreEog: true }) });
    } else throw new Error(`unknown message ${data.type}`);
  } catch (e) {
    postMessage({ type: "error", message: String(e && e.message ? e.message : e) });
  }
};
