// The chat's Web Worker: Pyodide (our Python glue) and the pocketmind wasm module side by side; the page only draws.
// chat-client.js drives it; the message loop, Python's start and the streaming are worker-common.js's.
"use strict";
importScripts("model-store.js", "engine-boot.js", "worker-common.js");

let engine = null; // {M, A, variant, threads}
let python = null; // a promise of the Pyodide instance with pocketmind imported
let service = null; // pocketmind.chat_service.ChatService for the loaded model

// The old model's memory is freed before the new one is read (two models may not fit at once).
function closeService() {
  if (service) {
    const old = service;
    service = null;
    old.close();
    old.destroy();
  }
}

// Refuse a model too large for the engine's memory before a byte of it is fetched and before the loaded model is
// closed (it stays usable). The rule and its message are Python's (pocketmind.memory); in use is the engine's
// memory before its first model, what stays allocated once a model is freed. At boot Python is still starting
// (the download runs beside it), so only later loads are checked.
async function checkRoom(model) {
  const memory = (await pythonReady(python)).pyimport("pocketmind.memory");
  try {
    pythonCall(() => memory.check_room(model.url, model.bytes, engine.baseBytes));
  } finally {
    memory.destroy();
  }
}

// `target`: the engine, or a promise of it while it starts (the download then starts before it; see downloadModel).
function download(id, model, target = engine) {
  closeService();
  return downloadModel(target, model, (loaded, total, how) =>
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

// Apply one LoRA adapter ({url, bytes, sha256}, fetched through the model store like a model) at `scale`, in place
// of the adapters applied before; null removes them. The buffer is ours again once add_adapter returns.
async function setAdapter(id, { adapter, scale }) {
  if (!service) throw new Error("no model is loaded");
  for (const { id: old } of JSON.parse(service.adapters_json()).adapters) service.remove_adapter(old);
  let listed = service.adapters_json();
  if (adapter) {
    const { M } = engine;
    const { buffer, size } = await downloadModel(engine, adapter, (loaded, total, how) =>
      postMessage({ type: "progress", id, what: "adapter", loaded, total, fromCache: !!(how && how.fromCache) }));
    try {
      listed = pythonCall(() => service.add_adapter(buffer, size, scale));
    } finally {
      M._pm_buffer_free(buffer);
    }
  }
  postMessage({ type: "result", id, ...JSON.parse(listed) });
}

function ask(id, request) {
  if (!service) throw new Error("no model is loaded");
  return streamSteps(id, service, () => service.start(JSON.stringify(request)));
}

async function boot(id, { config, model }) {
  if (engine) throw new Error("the engine is already running");
  // The model is asked for first of all, before Python's and the engine's start keep this thread busy, so its
  // network wait or its read from the model store overlaps theirs (the read is checked by WebCrypto, or hashed on
  // another thread: not on this one).
  let engineStarted;
  const starting = new Promise((resolve, reject) => { engineStarted = { resolve, reject }; });
  const downloading = download(id, model, starting);
  downloading.catch(() => {}); // a failed engine start is reported first
  python = bootPython(config.python, "pocketmind.chat_service");
  python.catch(() => {}); // reported by attach, once awaited
  bootWatchedEngine().then((started) => {
    engine = started;
    engine.baseBytes = engine.M.HEAPU8.length; // the engine's memory before any model (see checkRoom)
    stage("engine");
    postMessage({ type: "ready", variant: engine.variant, threads: engine.threads });
    return engine;
  }).then(engineStarted.resolve, engineStarted.reject);
  await starting;
  const downloaded = await downloading;
  stage("model");
  await attach(id, downloaded);
}

serve({
  boot,
  load: async (id, { model }) => {
    if (!engine) throw new Error("the engine is not running");
    try {
      await checkRoom(model);
    } catch (e) {
      // refused before anything changed: the page learns that the loaded model (if any) is still there
      postMessage({ type: "error", id, message: e.message, during: "load", modelKept: Boolean(service) });
      return;
    }
    await attach(id, await download(id, model));
  },
  ask: (id, { request }) => ask(id, request),
  adapter: setAdapter,
  bench: async (id, { n_prompt: nPrompt, n_gen: nGen }) => {
    if (!service) throw new Error("no model is loaded");
    postMessage({ type: "bench", id, ...JSON.parse(service.bench(nPrompt, nGen)) });
  },
  // the Benchmark page's speed test (pocketmind.bench), streamed: progress {what: "bench", phase, done, total}*,
  // then done {pp_tps, tg_tps, ...}; a stop naming this id ends it early
  benchmark: (id, { request }) => {
    if (!service) throw new Error("no model is loaded");
    return streamSteps(id, service, () => service.start_bench(JSON.stringify(request || {})),
      (event) => (event.type === "progress" ? { ...event, what: "bench" } : event));
  },
});
