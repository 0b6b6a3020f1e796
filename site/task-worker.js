// The Tasks and Evaluate pages' Web Worker: Pyodide with our glue and the pocketmind wasm module, holding one
// TaskService (task_service.py) with every model the page loaded. task-client.js drives it; the message loop and
// the streaming are worker-common.js's. Requests, each with an id (final replies in brackets):
//   boot {config: {python: {wheels, snapshot}, maxThreads}} [booted] | load {model: {url, bytes, sha256, name}} [loaded {card}] | unload {name}
//   [result] | call {method, args} [result {value}] | run, evaluate and answers {request, data}: streamed item /
//   progress events, then [done]. data: a dropped file's bytes (Uint8Array) or null. boot's config.maxThreads
//   caps the engine's threads (a page running several of these workers side by side shares the cores).
//   train {request, data}: a task head (start_train_head): streamed progress and epoch events, then [done].
//   finetune {request, data}: fine-tuning (start_finetune): streamed events, then [done] with model_bytes, the
//   written model read out of the engine's file system (and removed there).
"use strict";
importScripts("model-store.js", "engine-boot.js", "worker-common.js");

let engine = null; // {M, A, variant, threads}
let python = null; // a promise of the Pyodide instance with pocketmind imported
let service = null; // pocketmind.task_service.TaskService
const cards = new Map(); // loaded model name -> its card
// the service's methods a page may call by name (each takes and returns strings)
const CALLS = new Set(["load_task", "recommend", "results_csv", "results_json", "export_head", "import_head"]);

// The wasm memory only grows: its size now is the most the engine has held so far.
const withMemory = (event) => ({ ...event, wasm_memory_bytes: engine.M.HEAPU8.length });

async function boot(id, { config }) {
  if (engine) throw new Error("the engine is already running");
  ({ engine, python } = await startEngineAndPython(config, "pocketmind.task_service"));
  service = (await pythonReady(python)).pyimport("pocketmind.task_service").TaskService(2048, engine.threads);
  postMessage({ type: "booted", id });
}

// Download a model and add it to the service, next to the others (Python takes the buffer only when the model,
// its context and its chat template all succeeded).
async function load(id, { model }) {
  if (!service) throw new Error("the engine is not running");
  if (cards.has(model.name)) {
    postMessage({ type: "loaded", id, card: cards.get(model.name), fromCache: true, stored: true });
    return;
  }
  const loaded = await downloadInto(id, engine, python, model,
                                    (backend, buffer, size) => service.add_buffer(backend, buffer, size, model.name,
                                                                                  model.sha256 || null));
  cards.set(model.name, loaded.card);
  postMessage({ type: "loaded", id, ...loaded });
}

function serviceCall(fn) {
  if (!service) throw new Error("the engine is not running");
  return pythonCall(fn);
}

function stream(id, start, decorate = withMemory) {
  if (!service) throw new Error("the engine is not running");
  return streamSteps(id, service, start, decorate);
}

// A fine-tuning's done event names the model file it wrote in the engine's MEMFS: its bytes go to the page.
function withFinetuned(event) {
  event = withMemory(event);
  if (event.type !== "done" || !event.out) return event;
  const bytes = engine.M.FS.readFile(event.out);
  pythonCall(() => service.take_finetuned(event.out));
  return { ...event, model_bytes: bytes };
}

serve({
  boot,
  load,
  unload: (id, { name }) => {
    serviceCall(() => service.remove_model(name));
    cards.delete(name);
    postMessage({ type: "result", id, value: null });
  },
  call: (id, { method, args = [] }) => {
    if (!CALLS.has(method)) throw new Error(`unknown call ${method}`);
    postMessage({ type: "result", id, value: serviceCall(() => service[method](...args)) });
  },
  run: (id, { request, data }) => stream(id, () => service.start_run(JSON.stringify(request), data || null)),
  evaluate: (id, { request, data }) => stream(id, () => service.start_eval(JSON.stringify(request), data || null)),
  answers: (id, { request, data }) => stream(id, () => service.start_answers(JSON.stringify(request), data || null)),
  train: (id, { request, data }) => stream(id, () => service.start_train_head(JSON.stringify(request), data || null)),
  finetune: (id, { request, data }) => stream(id, () => service.start_finetune(JSON.stringify(request), data || null),
                                              withFinetuned),
});
