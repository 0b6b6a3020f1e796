// The chat's Web Worker: Pyodide (our Python glue) and the pocketmind wasm module side by side; the page only draws.
// In:  {type: "boot", config: {wheels: [url...], model: {url, bytes}}} | {type: "load", model} | {type: "ask", request}
//      | {type: "stop"}
// Out: {type: "stage", stage, seconds} | {type: "progress", what, loaded, total} | {type: "ready", variant, threads}
//      | {type: "loaded", card} | {type: "text", text} | {type: "done", ...} | {type: "error", message, during}
"use strict";
importScripts("model-store.js", "engine-boot.js", "pyodide/pyodide.js");

let engine = null; // {M, A, variant, threads}
let py = null; // the Pyodide instance with pocketmind imported
let service = null; // pocketmind.chat_service.ChatService for the loaded model
let busy = false;
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

function download(model) {
  if (service) {
    service.close(); // frees the old model's memory before the new one arrives
    service.destroy();
    service = null;
  }
  return downloadModel(engine.M, engine.A, model, (loaded, total, how) =>
    postMessage({ type: "progress", what: "model", loaded, total, fromCache: !!(how && how.fromCache) }));
}

function attach({ buffer, size, fromCache, stored, storeError }) {
  const { M, threads } = engine;
  const backend = py.pyimport("pocketmind.pyodide_backend").PyodideBackend(M, threads);
  const ChatService = py.pyimport("pocketmind.chat_service").ChatService;
  try {
    service = ChatService.from_buffer(backend, buffer, size, 2048, threads);
  } catch (e) {
    M._pm_buffer_free(buffer); // the model did not take it
    throw new Error(pythonMessage(e));
  }
  postMessage({ type: "loaded", card: JSON.parse(service.card_json()), fromCache, stored, storeError });
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

// Let queued messages (a stop request) in between tokens, without the 4 ms clamp of setTimeout.
const channel = new MessageChannel();
const yieldToEvents = () => new Promise((resolve) => { channel.port1.onmessage = resolve; channel.port2.postMessage(0); });

async function ask(request) {
  if (busy) throw new Error("an answer is already being written");
  busy = true;
  try {
    service.start(JSON.stringify(request));
    for (;;) {
      const event = service.step();
      if (event === undefined || event === null) break;
      postMessage(JSON.parse(event));
      await yieldToEvents();
    }
  } catch (e) {
    throw new Error(pythonMessage(e));
  } finally {
    busy = false;
  }
}

self.onmessage = async ({ data }) => {
  const during = data.type;
  try {
    if (data.type === "boot") {
      // the runtime, the engine and the model download all start at once
      const python = bootPython(data.config.wheels);
      python.catch(() => {}); // reported below, once awaited
      engine = await bootEngine();
      stage("engine");
      postMessage({ type: "ready", variant: engine.variant, threads: engine.threads });
      const model = await download(data.config.model);
      stage("model");
      try {
        py = await python;
      } catch (e) {
        engine.M._pm_buffer_free(model.buffer);
        throw new Error(`Python did not start: ${pythonMessage(e)}`);
      }
      attach(model);
    } else if (data.type === "load") {
      if (busy) throw new Error("wait for the answer to finish (or stop it) before switching models");
      attach(await download(data.model));
    } else if (data.type === "ask") {
      if (!service) throw new Error("no model is loaded");
      await ask(data.request);
    } else if (data.type === "bench") {
      if (!service || busy) throw new Error("the model is not loaded or busy");
      postMessage({ type: "bench", ...JSON.parse(service.bench(data.n_prompt, data.n_gen)) });
    } else if (data.type === "stop") {
      if (service) service.stop();
    } else {
      throw new Error(`unknown message ${data.type}`);
    }
  } catch (e) {
    postMessage({ type: "error", message: String(e && e.message ? e.message : e), during });
  }
};
