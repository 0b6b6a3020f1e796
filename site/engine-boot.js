// Start the pocketmind wasm module in a worker and download a model into its memory. Shared by the workers.
"use strict";

const BOOT_TIMEOUT_MS = 60000;

// Threads need SharedArrayBuffer, which browsers give only to cross-origin isolated pages.
function engineChoice() {
  const threaded = self.crossOriginIsolated && typeof SharedArrayBuffer !== "undefined";
  // leave a core for the page where there are many; two threads even on two cores (the page is idle meanwhile)
  const cores = self.navigator.hardwareConcurrency || 2;
  const threads = threaded && cores >= 2 ? Math.max(2, Math.min(4, cores - 1)) : 1;
  return { variant: threaded ? "mt" : "st", threads };
}

async function bootEngine() {
  const { variant, threads } = engineChoice();
  const script = new URL(`wasm/pocketmind-${variant}.js`, self.location.href).href;
  importScripts(script, new URL("wasm/pocketmind_api.js", self.location.href).href);
  let abort;
  const aborted = new Promise((_, reject) => (abort = reject));
  const timer = setTimeout(() => abort(new Error("the engine did not start within a minute")), BOOT_TIMEOUT_MS);
  try {
    const M = await Promise.race([
      createPocketmind({
        locateFile: (file) => new URL(`wasm/${file}`, self.location.href).href,
        mainScriptUrlOrBlob: script, // where the pthread workers load the module from
        onAbort: (what) => abort(new Error(`the engine stopped: ${what}`)),
      }),
      aborted,
    ]);
    M._pm_set_log_level(1);
    return { M, A: pocketmindApi(M), variant: `wasm-${variant}`, threads };
  } finally {
    clearTimeout(timer);
  }
}

// Download url straight into a fresh wasm buffer (no second copy in JS), reporting progress.
// Returns the buffer's address; the caller frees it (pm_buffer_free) or hands it to a model.
async function downloadModel(M, A, url, expectedBytes, onProgress) {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`download of ${url} failed: HTTP ${response.status}`);
  const total = Number(response.headers.get("Content-Length")) || expectedBytes;
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
      onProgress(loaded, total);
    }
    if (loaded !== total) throw new Error(`${url} ended after ${loaded} of ${total} bytes`);
    return { buffer, size: total };
  } catch (e) {
    M._pm_buffer_free(buffer);
    throw e;
  }
}
