// JavaScript helpers over a pocketmind wasm module's C API (wasm/pocketmind.h): argument memory, status checks,
// and the greedy loop. One file for Node (require) and browser workers (importScripts).
"use strict";

// Pointers: JS sees a wasm i32 result as signed, so an address at or above 2 GiB (memory grows to 4 GiB) comes
// back negative. Every pointer from the module is made unsigned with `>>> 0`, and heap indices use `>>> 2`.
function pocketmindApi(M) {
  const scratch = M._pm_buffer_alloc(64) >>> 0;

  // Views are re-read on every use: a grown memory replaces the buffer under them.
  const heapU8 = () => M.HEAPU8;
  const heap32 = () => M.HEAP32;
  const readPointer = (at) => M.HEAPU32[at >>> 2];
  const lastError = () => M.UTF8ToString(M._pm_last_error() >>> 0);

  function check(status, what) {
    if (status < 0) throw new Error(`${what}: ${lastError()}`);
    return status;
  }

  function withBuffer(bytes, fn) {
    const ptr = M._pm_buffer_alloc(Math.max(bytes, 8)) >>> 0;
    if (!ptr) throw new Error(`out of memory for ${bytes} bytes`);
    try {
      return fn(ptr);
    } finally {
      M._pm_buffer_free(ptr);
    }
  }

  // Model bytes go straight into wasm memory: the caller fills the buffer, the model uses it in place.
  function allocModelBuffer(size) {
    const ptr = M._pm_buffer_alloc(size) >>> 0;
    if (!ptr) throw new Error(`not enough memory for a ${(size / 1048576).toFixed(1)} MB model`);
    return ptr;
  }

  function loadModel(buffer, size) {
    const status = M._pm_model_load_buffer(buffer, size, scratch);
    if (status < 0) return { error: lastError(), status };
    return { model: readPointer(scratch) };
  }

  // A whole model's bytes copied into wasm memory and loaded in place (the Node drivers; the page streams its
  // download into allocModelBuffer's buffer instead). The buffer is freed again if the load fails; heapGrowth: how
  // much the load itself grew wasm memory.
  function loadModelBytes(bytes) {
    const buffer = allocModelBuffer(bytes.length);
    M.HEAPU8.set(bytes, buffer);
    const heapBefore = M.HEAPU8.length;
    const loaded = loadModel(buffer, bytes.length);
    if (loaded.error) {
      M._pm_buffer_free(buffer);
      return loaded;
    }
    return { ...loaded, buffer, heapGrowth: M.HEAPU8.length - heapBefore };
  }

  function freeModel(model, buffer) {
    M._pm_model_free(model);
    M._pm_buffer_free(buffer);
  }

  function newContext(model, { n_ctx = 0, n_batch = 512, threads = 1, embeddings = false, kv_f32 = false } = {}) {
    const flags = (embeddings ? 1 : 0) | (kv_f32 ? 2 : 0); // pm_context_flags
    check(M._pm_context_new(model, n_ctx, n_batch, threads, flags, scratch), "context");
    return readPointer(scratch);
  }

  // A LoRA adapter for `model` from GGUF bytes (in wasm memory for the load only): {adapter} or {error, status}.
  function loadAdapter(model, bytes) {
    return withBuffer(bytes.length, (ptr) => {
      heapU8().set(bytes, ptr);
      const status = M._pm_adapter_load_buffer(model, ptr, bytes.length, scratch);
      return status < 0 ? { error: lastError(), status } : { adapter: readPointer(scratch) };
    });
  }

  // Apply [[adapter, scale], ...] to a context instead of what it applied before ([] removes them all).
  function setAdapters(ctx, list) {
    withBuffer(8 * list.length, (ptr) => {
      list.forEach(([adapter, scale], i) => {
        M.HEAPU32[(ptr >>> 2) + i] = adapter;
        M.HEAPF32[(ptr >>> 2) + list.length + i] = scale;
      });
      check(M._pm_context_set_adapters(ctx, ptr, ptr + 4 * list.length, list.length), "adapters");
    });
  }

  function decode(ctx, tokens, pos, allLogits) {
    withBuffer(4 * tokens.length, (ptr) => {
      heap32().set(Int32Array.from(tokens), ptr >>> 2);
      check(M._pm_decode(ctx, ptr, tokens.length, pos, allLogits ? 1 : 0), "decode");
    });
  }

  function logits(ctx, nVocab, i) {
    const ptr = M._pm_logits(ctx, i) >>> 0;
    if (!ptr) throw new Error(`logits: ${lastError()}`);
    return M.HEAPF32.subarray(ptr >>> 2, (ptr >>> 2) + nVocab);
  }

  // The greedy token: position i's largest logit, found by the library (pm_argmax, which the glue's greedy
  // decoding calls too), without a pass over the logits in JS.
  function argmax(ctx, nVocab, i) {
    return M._pm_argmax(logits(ctx, nVocab, i).byteOffset, nVocab);
  }

  function tokenize(model, text, { addSpecial = true, parseSpecial = false } = {}) {
    const bytes = new TextEncoder().encode(text);
    const nMax = bytes.length + 8;
    return withBuffer(bytes.length + 4 * nMax + 8, (ptr) => {
      heapU8().set(bytes, ptr);
      const tokens = ((ptr + bytes.length + 3) & ~3) >>> 0; // & gives a signed result
      const nOut = tokens + 4 * nMax;
      check(M._pm_tokenize(model, ptr, bytes.length, addSpecial ? 1 : 0, parseSpecial ? 1 : 0, tokens, nMax, nOut),
            "tokenize");
      return Array.from(heap32().subarray(tokens >>> 2, (tokens >>> 2) + heap32()[nOut >>> 2]));
    });
  }

  function tokenBytes(model, token) {
    return withBuffer(264, (ptr) => {
      check(M._pm_token_bytes(model, token, 0, ptr, 256, ptr + 256), "token bytes");
      return heapU8().slice(ptr, ptr + heap32()[(ptr + 256) >>> 2]); // a copy: shared memory can't be decoded
    });
  }

  // Greedy continuation of `tokens` (already decoded when pos > 0). onToken(id) sees each new token.
  function greedy(model, ctx, tokens, n, { ignoreEog = false, onToken = null } = {}) {
    const nVocab = M._pm_model_n_vocab(model);
    M._pm_kv_clear(ctx);
    decode(ctx, tokens, 0, false);
    let pos = tokens.length;
    const out = [];
    for (let i = 0; i < n; i++) {
      const t = argmax(ctx, nVocab, -1);
      if (!ignoreEog && M._pm_model_is_eog(model, t)) break;
      out.push(t);
      if (onToken && onToken(t) === false) break;
      if (i + 1 < n) decode(ctx, [t], pos++, false);
    }
    return out;
  }

  // Prompt and generation tokens/s on synthetic tokens (the same ones benchmarks/engine_speed.py uses natively).
  function bench(model, ctx, nPrompt, nGen) {
    const nVocab = M._pm_model_n_vocab(model);
    const prompt = Array.from({ length: nPrompt }, (_, i) => 1 + ((i * 7919) % (nVocab - 1)));
    // Warm-up with the same shapes: the first run grows memory for the batch and runs V8's baseline code
    // until its optimizing compiler has caught up (1.5-2x slower).
    for (let round = 0; round < 2; round++) {
      M._pm_kv_clear(ctx);
      decode(ctx, prompt, 0, false);
      for (let i = 0; i < 8; i++) decode(ctx, [prompt[i]], prompt.length + i, false);
    }
    M._pm_kv_clear(ctx);
    let t0 = performance.now();
    decode(ctx, prompt, 0, false);
    const ppSeconds = (performance.now() - t0) / 1000;
    let pos = prompt.length;
    t0 = performance.now();
    for (let i = 0; i < nGen; i++) decode(ctx, [argmax(ctx, nVocab, -1)], pos++, false);
    const tgSeconds = (performance.now() - t0) / 1000;
    M._pm_kv_clear(ctx);
    return { pp_tps: nPrompt / ppSeconds, tg_tps: nGen / tgSeconds };
  }

  return { check, lastError, withBuffer, allocModelBuffer, loadModel, loadModelBytes, freeModel, loadAdapter, setAdapters, newContext, decode,
           logits, argmax, tokenize, tokenBytes, greedy, bench };
}

if (typeof module !== "undefined" && module.exports) module.exports = pocketmindApi;
