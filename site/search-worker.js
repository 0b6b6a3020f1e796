// The Search page's Web Worker: Pyodide with our glue and the pocketmind wasm module, holding one SearchService
// (search_service.py) with the embedding model and, once asked for an answer, the chat model. search-client.js
// drives it; the message loop and the streaming are worker-common.js's. Requests, each with an id (final replies
// in brackets):
//   boot {config: {python: {wheels, snapshot}, maxThreads}} [booted] | load {model: {url, bytes, sha256, name}, role: "embedder" | "chat"}
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
const CALLS = new Set(["search", "info_json", "clear", "import_index", "embed_json"]);

async function boot(id, { config }) {
  if (engine) throw new Error("the engine is already running");
  ({ engine, python } = await startEngineAndPython(config, "pocketmind.search_service"));
  service = (await pythonReady(python)).pyimport("pocketmind.search_service").SearchService(2048, engine.threads);
  postMessage({ type: "booted", id });
}

// Download a model and give it to the service in its role (Python takes the buffer only when the model loaded).
async function load(id, { model, role }) {
  if (!service) throw new Error("the engine is not running");
  if (role !== "embedder" && role !== "chat") throw new Error(`unknown model role ${role}`);
  const known = cards.get(role);
  if (known && known.name === model.name) {
    postMessage({ type: "loaded", id, card: known.card, fromCache: true, stored: true });
    return;
  }
  const loaded = await downloadInto(id, engine, python, model, (backend, buffer, size) => (role === "embedder"
    ? service.add_embedder_buffer(backend, buffer, size, model.sha256, model.name)
    : service.add_chat_buffer(backend, buffer, size, model.name)));
  cards.set(role, { name: model.name, card: loaded.card });
  postMessage({ type: "loaded", id, ...loaded });
}

function serviceCall(fn) {
  if (!service) throw new Error("the engine is not running");
  return pythonCall(fn);
}

// The index's bytes, copied out of Python and handed to the page (transferred, not copied again).
function exportIndex(id) {
  const proxy = serviceCall(() => service.export_index());
  try {
    const view = proxy.getBuffer("u8");
    const bytes = view.data.slice();
    view.release();
    postMessage({ type: "result", id, value: bytes }, [bytes.buffer]);
  } finally {
    proxy.destroy();
  }
}

// A dropped File as the service reads documents: its size at once, its bytes only when Python asks (a worker may
// read a Blob synchronously), so a file over the size limit is never read and 10 000 files are not all in memory.
const lazyFile = (data) => (data instanceof Blob
  ? { size: data.size, read: () => new Uint8Array(new FileReaderSync().readAsArrayBuffer(data)) }
  : data);

function stream(id, start) {
  if (!service) throw new Error("the engine is not running");
  return streamSteps(id, service, start);
}

serve({
  boot,
  load,
  call: (id, { method, args = [] }) => {
    if (!CALLS.has(method)) throw new Error(`unknown call ${method}`);
    postMessage({ type: "result", id, value: serviceCall(() => service[method](...args)) });
  },
  export: (id) => exportIndex(id),
  add: (id, { request, data }) => stream(id, () => service.start_add(JSON.stringify(request),
                                                                     data ? data.map(lazyFile) : null)),
  answer: (id, { request }) => stream(id, () => service.start_answer(JSON.stringify(request))),
});
