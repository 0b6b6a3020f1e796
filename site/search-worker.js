// The Search page's Web Worker: Pyodide with our glue and the pocketmind wasm module, holding one SearchService
// (search_service.py) with the embedding model and, once asked for an answer, the chat model. search-client.js
// drives it; the message loop and the streaming are worker-common.js's. Requests, each with an id (final replies
// in brackets):
//   boot {config: {wheels}} [booted] | load {model: {url, bytes, sha256, name}, role: "embedder" | "chat"}
//   [loaded {card}] | call {method, args} [result {value}] | export [result {value: Uint8Array}] |
//   add {request, data: [Uint8Array, ...] | null} and answer {request}: streamed file / progress / passages /
//   prompt / text events, then [done].
"use strict";
importScripts("model-store.js", "engine-boot.js", "worker-common.js");

let engine = null; // {M, A, variant, threads}
let python = null; // a promise of the Pyodide instance with pocketmind imported
let service = null; // pocketmind.search_service.SearchService
const cards = new Map(); // role -> {name, card}
// the service's methods a page may call by name (strings in and out; import_index takes the index's bytes)
const CALLS = new Set(["search", "info_json", "clear", "import_index"]);

async function boot(id, { config }) {
  if (engine) throw new Error("the engine is already running");
  python = bootPython(config.wheels, "pocketmind.search_service");
  python.catch(() => {}); // reported below, once awaited
  engine = await bootEngine({ onCrash: (message) => postMessage({ type: "crashed", message }),
                              maxThreads: config.maxThreads || 4 });
  stage("engine");
  postMessage({ type: "ready", variant: engine.variant, threads: engine.threads });
  let py;
  try {
    py = await python;
  } catch (e) {
    throw new Error(`Python did not start: ${pythonMessage(e)}`);
  }
  service = py.pyimport("pocketmind.search_service").SearchService(2048, engine.threads);
  postMessage({ type: "booted", id });
}

// Download a model into wasm memory and give it to the service in its role. Until the service takes it, the
// buffer is ours to free.
async function load(id, { model, role }) {
  if (!service) throw new Error("the engine is not running");
  if (role !== "embedder" && role !== "chat") throw new Error(`unknown model role ${role}`);
  const known = cards.get(role);
  if (known && known.name === model.name) {
    postMessage({ type: "loaded", id, card: known.card, fromCache: true, stored: true });
    return;
  }
  const { M, A, threads } = engine;
  const { buffer, size, fromCache, stored, storeError } = await downloadModel(M, A, model, (loaded, total, how) =>
    postMessage({ type: "progress", id, what: "model", loaded, total, fromCache: !!(how && how.fromCache) }));
  const backend = (await python).pyimport("pocketmind.pyodide_backend").PyodideBackend(M, threads);
  let card;
  try {
    card = JSON.parse(role === "embedder"
      ? service.add_embedder_buffer(backend, buffer, size, model.sha256, model.name)
      : service.add_chat_buffer(backend, buffer, size, model.name));
  } catch (e) {
    M._pm_buffer_free(buffer);
    throw new Error(pythonMessage(e));
  } finally {
    backend.destroy();
  }
  cards.set(role, { name: model.name, card });
  postMessage({ type: "loaded", id, card, fromCache, stored, storeError });
}

function pythonCall(fn) {
  if (!service) throw new Error("the engine is not running");
  try {
    return fn();
  } catch (e) {
    throw new Error(pythonMessage(e));
  }
}

// The index's bytes, copied out of Python and handed to the page (transferred, not copied again).
function exportIndex(id) {
  const proxy = pythonCall(() => service.export_index());
  try {
    const view = proxy.getBuffer("u8");
    const bytes = view.data.slice();
    view.release();
    postMessage({ type: "result", id, value: bytes }, [bytes.buffer]);
  } finally {
    proxy.destroy();
  }
}

function stream(id, start) {
  if (!service) throw new Error("the engine is not running");
  return streamSteps(id, service, start);
}

serve({
  boot,
  load,
  call: (id, { method, args = [] }) => {
    if (!CALLS.has(method)) throw new Error(`unknown call ${method}`);
    postMessage({ type: "result", id, value: pythonCall(() => service[method](...args)) });
  },
  export: (id) => exportIndex(id),
  add: (id, { request, data }) => stream(id, () => service.start_add(JSON.stringify(request), data || null)),
  answer: (id, { request }) => stream(id, () => service.start_answer(JSON.stringify(request))),
});
