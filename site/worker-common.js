// What every pocketmind worker shares, loaded with importScripts("worker-common.js") (classic scripts, globals):
// starting Python with our glue, streaming a Python service's events to the page, and the message loop.
// worker-client.js, the page's half, documents the protocol. A worker only adds its handlers:
//
//   importScripts("model-store.js", "engine-boot.js", "worker-common.js");
//   serve({ load: async (id, data) => ..., run: (id, data) => streamSteps(id, service, () => service.start(...)) });
//
// Each handler gets the request's id and message; it posts its own final reply (worker-client.js lists them) and
// may throw: the page then gets {type: "error", id, message, during}.
"use strict";
importScripts("pyodide/pyodide.js");

const t0 = performance.now();
// A boot stage, timed by this worker's clock: `seconds` since the worker started, and `at` as an absolute time
// (performance.timeOrigin + now, in ms) that the page (or a benchmark) can place on its own clock.
const stage = (name, detail = {}) => {
  const now = performance.now();
  postMessage({ type: "stage", stage: name, seconds: (now - t0) / 1000, at: performance.timeOrigin + now,
                ...detail });
};
stage("worker");

async function fetchWheel(url) {
  const response = await fetch(new URL(url, self.location.href).href);
  if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
  return new Uint8Array(await response.arrayBuffer());
}

// Pyodide with the wheels (numpy, jinja2, markupsafe, our glue: URLs) unpacked into site-packages and `module` (say
// "pocketmind.chat_service") imported. The wheels download (or come out of the service worker's cache) while
// Pyodide starts. They are only unpacked, with no package manager and no dependency resolution (everything the
// glue needs is shipped, nothing comes from PyPI), and an extension module is compiled when Python first imports
// it, where loadPackage would compile all of numpy's up front (the chat never needs numpy.fft or numpy's test
// modules; numpy.random is compiled at the first answer's sampler, numpy.linalg by `import numpy` itself).
// `snapshot` ({url, sha256}): the started interpreter with the standard library's and jinja2's modules imported,
// made at build time (pyodide_snapshot.py). It is restored only when the app's cache holds it already (a returning
// visit: a first visit would wait for 25 MB more than it needs), and only if its sha256 matches.
async function bootPython({ wheels, snapshot }, module) {
  const fetched = wheels.map(fetchWheel);
  fetched.forEach((p) => p.catch(() => {})); // awaited below, in order
  const indexURL = new URL("pyodide/", self.location.href).href;
  const stored = await storedSnapshot(snapshot);
  let pyodide = null;
  if (stored) {
    try {
      pyodide = await loadPyodide({ indexURL, _loadSnapshot: stored });
      pyodide.runPython("import random; random.seed()"); // the snapshot's seed is everyone's: a fresh one
    } catch (e) {
      console.warn(`the stored Python snapshot could not be restored (${e && e.message}): starting Python afresh`);
      pyodide = null;
    }
  }
  const restored = Boolean(pyodide);
  if (!pyodide) pyodide = await loadPyodide({ indexURL });
  stage("python", { snapshot: restored });
  const sysconfig = pyodide.pyimport("sysconfig");
  const sitePackages = sysconfig.get_path("purelib");
  sysconfig.destroy();
  for (const wheel of fetched) pyodide.unpackArchive(await wheel, "wheel", { extractDir: sitePackages });
  stage("packages");
  pyodide.pyimport(module).destroy();
  stage("glue");
  return pyodide;
}

// The snapshot's bytes if a cache of this origin (the service worker's app cache) holds them and they have the
// build's sha256; else null, and Python starts without it.
async function storedSnapshot(snapshot) {
  if (!snapshot || !self.caches) return null;
  try {
    const response = await caches.match(new URL(snapshot.url, self.location.href).href);
    if (!response || !response.ok) return null;
    const bytes = new Uint8Array(await response.arrayBuffer());
    const hex = await pocketmindModelStore.sha256Hex(bytes); // model-store.js: imported before this file
    if (hex === snapshot.sha256) return bytes;
    console.warn(`the stored Python snapshot does not match its sha256 (${hex}): starting Python afresh`);
  } catch (e) {
    console.warn(`the stored Python snapshot could not be read (${e && e.message}): starting Python afresh`);
  }
  return null;
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

let streaming = null; // {id, service} of the run being streamed: a stop naming that id reaches its service

// Run `start()` (which starts a run on a Python service: start, start_run, ...), then post every event its
// step() returns, tagged with `id`, until it returns None. `decorate(event)` may add what only the worker knows
// (the task worker adds the wasm memory size).
async function streamSteps(id, service, start, decorate = (event) => event) {
  streaming = { id, service };
  try {
    start();
    for (;;) {
      const event = service.step();
      if (event === undefined || event === null) break;
      if (event !== "") postMessage({ ...decorate(JSON.parse(event)), id }); // "": a step with nothing to tell
      await yieldToEvents();
    }
  } catch (e) {
    throw new Error(pythonMessage(e));
  } finally {
    streaming = null;
  }
}

// The worker's message loop: ping and stop are answered at once (between a stream's events); every request with a
// handler runs one at a time, in arrival order.
function serve(handlers) {
  let serial = Promise.resolve();
  self.onmessage = ({ data }) => {
    const { type, id } = data;
    if (type === "ping") {
      postMessage({ type: "pong", id });
    } else if (type === "stop") {
      if (streaming && streaming.id === id) streaming.service.stop();
    } else if (Object.hasOwn(handlers, type)) {
      serial = serial.then(() => handlers[type](id, data)).catch((e) => {
        postMessage({ type: "error", id, message: String(e && e.message ? e.message : e), during: type });
      });
    } else {
      postMessage({ type: "error", id, message: `unknown message ${type}`, during: type });
    }
  };
}

// The engine, telling the page's watchdog (worker-client.js) of its abort ("crashed") and of its signs of life
// during a long call ("busy").
function bootWatchedEngine(maxThreads = 4) {
  return bootEngine({
    onCrash: (message) => postMessage({ type: "crashed", message }),
    onBusy: () => postMessage({ type: "busy" }),
    maxThreads,
  });
}

// Python (with `module` imported) and the engine, started at once: {engine, python (a promise of Pyodide)}. Posts
// the "engine" stage and "ready"; an abort after start-up is posted as "crashed".
// config: {python: {wheels, snapshot}, maxThreads}.
async function startEngineAndPython(config, module) {
  const python = bootPython(config.python, module);
  python.catch(() => {}); // reported by whoever awaits it (pythonReady)
  const engine = await bootWatchedEngine(config.maxThreads || 4);
  stage("engine");
  postMessage({ type: "ready", variant: engine.variant, threads: engine.threads });
  return { engine, python };
}

async function pythonReady(python) {
  try {
    return await python;
  } catch (e) {
    throw new Error(`Python did not start: ${pythonMessage(e)}`);
  }
}

// Download `model` into a fresh wasm buffer (its progress posted for request `id`) and hand it to
// take(backend, buffer, size), a Python call that returns the model's card as JSON. Until take returns, the buffer
// is ours: freed here when anything fails. Resolves {card, fromCache, stored, storeError}.
async function downloadInto(id, engine, python, model, take) {
  const { M, threads } = engine;
  const { buffer, size, fromCache, stored, storeError } = await downloadModel(engine, model, (loaded, total, how) =>
    postMessage({ type: "progress", id, what: "model", loaded, total, fromCache: !!(how && how.fromCache) }));
  let backend = null;
  try {
    backend = (await pythonReady(python)).pyimport("pocketmind.pyodide_backend").PyodideBackend(M, threads);
    return { card: JSON.parse(take(backend, buffer, size)), fromCache, stored, storeError };
  } catch (e) {
    M._pm_buffer_free(buffer);
    throw new Error(pythonMessage(e));
  } finally {
    if (backend) backend.destroy();
  }
}

// fn(), with a Python exception turned into an Error carrying only its message.
function pythonCall(fn) {
  try {
    return fn();
  } catch (e) {
    throw new Error(pythonMessage(e));
  }
}
