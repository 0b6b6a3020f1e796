// The chat's Web Worker: Pyodide (our Python glue) and the pocketmind wasm module side by side; the page only draws.
// Pages talk to it through chat-client.js, which documents the protocol: every request has an id and every reply
// names it; boot, load, ask and bench run one at a time in arrival order, stop and ping are answered at once.
"use strict";
importScripts("model-store.js", "engine-boot.js", "pyodide/pyodide.js");

let engine = null; // {M, A, variant, threads}
let python = null; // a promise of the Pyodide instance with pocketmind imported
let service = null; // pocketmind.chat_service.ChatService for the loaded model
let answering = null; // id of the ask being answered
let serial = Promise.resolve(); // the queue of boot/load/ask/bench
const t0 = performance.now();
const stage = (name) => postMessage({ type: "stage", stage: name, seconds: (performance.now() - t0) / 1000 });

async function bootPython(wheels) {
  const pyodide = await loadPyodide({ indexURL: new URL("pyodide/", self.location.href).href });
  stage("python");
  await pyodide.loadPackage(["numpy", "micropip"], { messageCallback: () => {} });
  const micropip = pyodide.pyimport("micropip");
  for (const url of wheels) {
    // in order, without dependency resolution: everything the glue needs is shipped here, nothing comes from PyPI
    await micropip.install(new URL(url, self.location.href).href, { deps: false });
  }
  pyodide.pyimport("pocketmind.chat_service");
  stage("glue");
  return pyodide;
}

// The old model's memory is freed before the new one is read (two models may not fit at once).
function closeService() {
  if (service) {
    const old = service;
    service = null;
    old.close();
    old.destroy();
  }
}

function download(id, model) {
  closeService();
  return downloadModel(engine.M, engine.A, model, (loaded, total, how) =>
    postMessage({ type: "progress", id, what: "model", loaded, total, fromCache: !!(how && how.fromCache) }));
}

// Hand the downloaded buffer to a new ChatService. Until from_buffer returns, the buffer is ours: Python takes it
// only when the model, its context and its chat template all succeeded, and leaves it to us when anything failed.
async function attach(id, { buffer, size, fromCache, stored, storeError }) {
  let py;
  try {
    py = await python;
  } catch (e) {
    engine.M._pm_buffer_free(buffer);
    throw new Error(`Python did not start: ${pythonMessage(e)}`);
  }
  const { M, threads } = engine;
  const backend = py.pyimport("pocketmind.pyodide_backend").PyodideBackend(M, threads);
  const ChatService = py.pyimport("pocketmind.chat_service").ChatService;
  try {
    service = ChatService.from_buffer(backend, buffer, size, 2048, threads);
  } catch (e) {
    M._pm_buffer_free(buffer);
    throw new Error(pythonMessage(e));
  } finally {
    backend.destroy();
    ChatService.destroy();
  }
  postMessage({ type: "loaded", id, card: JSON.parse(service.card_json()), fromCache, stored, storeError });
}

// What a person needs of a Python traceback: the exception's own message ("cannot load model ..."), which may
// span lines, without the traceback above it or the exception's module path.
function pythonMessage(e) {
  const text = String(e && e.message ? e.message : e).trim();
  const lines = text.split("\n");
  let start = -1;
  lines.forEach((line, i) => { if (/^[\w.]*(Error|Exception)\b[^:]*: /.test(line)) start = i; });
  if (start < 0) return lines.filter(Boolean).pop() || text;
  return [lines[start].replace(/^[\w.]*(Error|Exception)\b[^:]*: /, ""), ...lines.slice(start + 1)].join("\n").trim();
}

// Let queued messages (stop, ping) in between tokens and prompt batches, without the 4 ms clamp of setTimeout.
const channel = new MessageChannel();
const yieldToEvents = () => new Promise((resolve) => { channel.port1.onmessage = resolve; channel.port2.postMessage(0); });

async function ask(id, request) {
  if (!service) throw new Error("no model is loaded");
  answering = id;
  try {
    service.start(JSON.stringify(request));
    for (;;) {
      const event = service.step();
      if (event === undefined || event === null) break;
      postMessage({ ...JSON.parse(event), id });
      await yieldToEvents();
    }
  } catch (e) {
    throw new Error(pythonMessage(e));
  } finally {
    answering = null;
  }
}

async function boot(id, { config, model }) {
  if (engine) throw new Error("the engine is already running");
  // the runtime, the engine and the model download all start at once
  python = bootPython(config.wheels);
  python.catch(() => {}); // reported by attach, once awaited
  engine = await bootEngine({ onCrash: (message) => postMessage({ type: "crashed", message }) });
  stage("engine");
  postMessage({ type: "ready", variant: engine.variant, threads: engine.threads });
  const downloaded = await download(id, model);
  stage("model");
  await attach(id, downloaded);
}

const HANDLERS = {
  boot,
  load: async (id, { model }) => {
    if (!engine) throw new Error("the engine is not running");
    await attach(id, await download(id, model));
  },
  ask: (id, { request }) => ask(id, request),
  bench: async (id, { n_prompt: nPrompt, n_gen: nGen }) => {
    if (!service) throw new Error("no model is loaded");
    postMessage({ type: "bench", id, ...JSON.parse(service.bench(nPrompt, nGen)) });
  },
};

self.onmessage = ({ data }) => {
  const { type, id } = data;
  if (type === "ping") {
    postMessage({ type: "pong", id });
  } else if (type === "stop") {
    if (service && answering !== null && answering === id) service.stop();
  } else if (HANDLERS[type]) {
    serial = serial.then(() => HANDLERS[type](id, data)).catch((e) => {
      postMessage({ type: "error", id, message: String(e && e.message ? e.message : e), during: type });
    });
  } else {
    postMessage({ type: "error", id, message: `unknown message ${type}`, during: type });
  }
};
