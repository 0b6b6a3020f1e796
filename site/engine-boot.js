// Start the pocketmind wasm module in a worker and download a model into its memory. Shared by the workers.
"use strict";

const BOOT_TIMEOUT_MS = 60000;
const BUSY_MS = 500; // the least time between two signs of life from one long engine call

importScripts("wasm-features.js");

// Threads need SharedArrayBuffer, which browsers give only to cross-origin isolated pages. maxThreads: a page that
// runs several engines side by side gives each its share of the cores. The relaxed-SIMD build where the browser
// has relaxed SIMD (wasm-features.js).
function engineChoice(maxThreads = 4) {
  const threaded = self.crossOriginIsolated && typeof SharedArrayBuffer !== "undefined";
  // leave a core for the page where there are many; two threads even on two cores (the page is idle meanwhile)
  const cores = self.navigator.hardwareConcurrency || 2;
  const threads = threaded && cores >= 2 ? Math.max(1, Math.min(maxThreads, 4, Math.max(2, cores - 1))) : 1;
  return { variant: (threaded ? "mt" : "st") + (relaxedSimd() ? "-relaxed" : ""), threads };
}

// onCrash(message): the module aborted after it started (a failed assert on one of its threads, say); it is
// unusable from then on. onBusy(): a sign of life from inside a long engine call (a graph's nodes go on being
// computed), at most every BUSY_MS.
async function bootEngine({ onCrash = () => {}, onBusy = () => {}, maxThreads = 4 } = {}) {
  const { variant, threads } = engineChoice(maxThreads);
  const script = new URL(`wasm/pocketmind-${variant}.js`, self.location.href).href;
  importScripts(script, new URL("wasm/pocketmind_api.js", self.location.href).href);
  let abort;
  let started = false;
  const aborted = new Promise((_, reject) => (abort = reject));
  const timer = setTimeout(() => abort(new Error("the engine did not start within a minute")), BOOT_TIMEOUT_MS);
  let lastBusy = 0;
  try {
    const M = await Promise.race([
      createPocketmind({
        locateFile: (file) => new URL(`wasm/${file}`, self.location.href).href,
        mainScriptUrlOrBlob: script, // where the pthread workers load the module from
        onAbort: (what) => (started ? onCrash(`the engine aborted: ${what}`) : abort(new Error(`the engine stopped: ${what}`))),
        onBusy: () => { // called by the engine (pocketmind.cpp's pm_js_busy) while a graph is computed
          const now = performance.now();
          if (now - lastBusy >= BUSY_MS) {
            lastBusy = now;
            onBusy();
          }
        },
      }),
      aborted,
    ]);
    started = true;
    M._pm_set_log_level(1);
    return { M, A: pocketmindApi(M), variant: `wasm-${variant}`, threads };
  } finally {
    clearTimeout(timer);
  }
}

// The wasm32 memory holds at most 4 GiB, but Emscripten 3.1.6 grows it in signed 32-bit steps: one allocation
// of 2 GiB or more always fails, so a model must be smaller than that to be held in one piece.
const MAX_MODEL_BYTES = 2 ** 31 - 2 ** 16;

// At most this many bytes of a model wait in JS for the engine (downloadModel with an engine still starting); the
// download then pauses until the engine's buffer takes them.
const EARLY_BYTES = 128 * 2 ** 20;

// Fetch a model ({url, bytes, sha256}) from Cache Storage or the network (model-store.js verifies its sha256
// and keeps it for offline use) straight into a fresh wasm buffer: no second copy in JS. `engine` ({M, A}) may be
// a promise of the engine still starting: the download starts at once, its first EARLY_BYTES wait in JS, and
// they are copied into the buffer once the engine can allocate it.
// Returns {buffer, size, fromCache, stored, storeError}; the caller frees the buffer or hands it to a model.
async function downloadModel(engine, model, onProgress) {
  const size = model.bytes;
  if (!Number.isSafeInteger(size) || size <= 0) {
    throw new Error(`the size of ${model.url} is unknown or not a whole number of bytes (${size})`);
  }
  if (size > MAX_MODEL_BYTES) {
    throw new Error(`${model.url} is ${(size / 2 ** 30).toFixed(2)} GB: this engine's WebAssembly memory can hold a model of at most 2 GB`);
  }
  // said at once: the model is asked for now, before the engine is up; a stored model's first chunk waits for
  // its cache lookup and block record, which a warm engine's start can outrun
  onProgress(0, size);
  let M = null;
  let buffer = null;
  let early = []; // [chunk copy, offset] that came before the buffer
  let waiting = 0;
  const allocated = Promise.resolve(engine).then((started) => {
    M = started.M;
    buffer = started.A.allocModelBuffer(size);
    for (const [chunk, offset] of early) M.HEAPU8.set(chunk, buffer + offset);
    early = null;
  });
  allocated.catch(() => {}); // awaited below
  try {
    const result = await pocketmindModelStore.fetchModel(model.url, {
      sha256: model.sha256,
      size,
      sink: (chunk, offset) => {
        // never past the buffer, whatever the server sends
        if (offset + chunk.length > size) throw new Error(`${model.url} sent more than its ${size} bytes`);
        if (buffer !== null) {
          M.HEAPU8.set(chunk, buffer + offset);
          return undefined;
        }
        early.push([chunk.slice(), offset]); // a copy: the store writes the same chunk to Cache Storage
        waiting += chunk.length;
        return waiting >= EARLY_BYTES ? allocated : undefined; // a promise: the download waits for the engine
      },
      onProgress: (loaded, total, how) => onProgress(loaded, total, how),
    });
    await allocated; // a small model may be complete before the engine
    return { buffer, size, fromCache: result.fromCache, stored: result.stored,
             storeError: result.storeError };
  } catch (e) {
    if (buffer !== null) M._pm_buffer_free(buffer);
    early = null;
    throw e;
  }
}
