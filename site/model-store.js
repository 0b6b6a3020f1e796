// Model storage for the browser: download a GGUF once, verify its sha256, keep it in Cache Storage
// ("pocketmind-models-v1", keyed by absolute URL), and load it from there later without the network.
// A classic script (importScripts in a worker, or <script> in a page) defining one global, pocketmindModelStore:
//
//   fetchModel(url, {sha256, size, sink, onProgress, signal})
//     -> {url, bytes, size, sha256, fromCache, stored, storeError, cacheError}
//     sink(chunk, offset, total): called for each chunk in order; copy the chunk (do not keep, modify or transfer
//       it: the same bytes are being written to Cache Storage). With a sink, bytes is null. The destination is
//       only trustworthy once fetchModel resolves; if a cached copy turns out corrupt, the download starts again
//       at offset 0. Without a sink, bytes is a Uint8Array of the model.
//     onProgress(loaded, total, {fromCache}): first (0, total), then after every chunk; total may be null when
//       neither size nor Content-Length is known.
//     stored: the model is now in Cache Storage; storeError: why not (e.g. quota), the load itself succeeded.
//     cacheError: why a cached copy was discarded before this download (a failed check), else null.
//   storeModel(url, bytes) -> {url, size, sha256}: keep bytes the person chose (a LoRA adapter from a file) under
//     url, as if downloaded from there: fetchModel(url, {sha256}) then finds them, offline too.
//   listModels() -> [{url, size, sha256, storedAt}]      deleteModel(url) -> bool
//   hasModel(url) -> bool
//   storageEstimate() -> {usage, quota} | null           requestPersistence() -> bool | null
//   new Sha256().update(bytes)...digest() -> hex         (incremental; crypto.subtle has no streaming digest)
//   sha256Hex(bytes) -> promise of hex                    (WebCrypto's, of bytes held whole)
//
// Memory: chunks go to the sink (the engine copies them into wasm memory), as copies to the incremental SHA-256
// below on its own thread, and into Cache Storage at the same time, so no second full copy of the model is held in
// JS; the hashing thread and the cache writer may each lag the download by at most 8 MiB before it waits for them.
// Without a sink and with a known size there is one copy (the returned buffer); with an unknown size the chunks
// are joined at the end (two copies for a moment). The JS hash runs at roughly 100-150 MB/s (Chromium / Node,
// x86-64): about a second per 100 MB. The cache entry only commits when its body stream closes, and it is closed
// only after the hash matched: on a mismatch or an abort it is errored instead, and Cache Storage keeps nothing.
//
// A stored model is checked again on every read, by the SHA-256 of each of its 4 MiB blocks (kept beside it, in
// "pocketmind-model-blocks-v1", when it was stored): WebCrypto computes those at native speed off this thread,
// where the whole file's hash can only be computed in order by the JS code. A model stored without that list (by
// an older version) is hashed whole, as on download, and the list is written then.
"use strict";

var pocketmindModelStore = (function () {
  const CACHE_NAME = "pocketmind-models-v1";
  const H_SHA = "X-Pocketmind-Sha256";
  const H_SIZE = "X-Pocketmind-Size";
  const H_AT = "X-Pocketmind-Stored-At";
  // how much the cache writer may lag behind the download before the download waits for it
  const CACHE_QUEUE_BYTES = 8 << 20;

  // ---- SHA-256 (FIPS 180-4), incremental: crypto.subtle.digest needs the whole buffer at once ----
  const K = new Int32Array([
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
  ]);
  const H0 = [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19];

  function Sha256() {
    this.h = new Int32Array(H0);
    this.w = new Int32Array(64);
    this.buf = new Uint8Array(64); // a partial block carried between update() calls
    this.nbuf = 0;
    this.length = 0; // bytes hashed so far (a double: exact far beyond any model size)
  }

  Sha256.prototype._block = function (p, o) {
    const w = this.w, h = this.h;
    for (let i = 0; i < 16; i++, o += 4) w[i] = (p[o] << 24) | (p[o + 1] << 16) | (p[o + 2] << 8) | p[o + 3];
    for (let i = 16; i < 64; i++) {
      const x = w[i - 15], y = w[i - 2];
      const s0 = ((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3);
      const s1 = ((y >>> 17) | (y << 15)) ^ ((y >>> 19) | (y << 13)) ^ (y >>> 10);
      w[i] = (w[i - 16] + s0 + w[i - 7] + s1) | 0;
    }
    let a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], k = h[7];
    for (let i = 0; i < 64; i++) {
      const S1 = ((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7));
      const t1 = (k + S1 + ((e & f) ^ (~e & g)) + K[i] + w[i]) | 0;
      const S0 = ((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10));
      const t2 = (S0 + ((a & b) ^ (a & c) ^ (b & c))) | 0;
      k = g; g = f; f = e; e = (d + t1) | 0; d = c; c = b; b = a; a = (t1 + t2) | 0;
    }
    h[0] = (h[0] + a) | 0; h[1] = (h[1] + b) | 0; h[2] = (h[2] + c) | 0; h[3] = (h[3] + d) | 0;
    h[4] = (h[4] + e) | 0; h[5] = (h[5] + f) | 0; h[6] = (h[6] + g) | 0; h[7] = (h[7] + k) | 0;
  };

  // data: a Uint8Array (or anything with byte indexing and subarray); returns this for chaining
  Sha256.prototype.update = function (data) {
    const n = data.length;
    let i = 0;
    this.length += n;
    if (this.nbuf) {
      i = Math.min(64 - this.nbuf, n);
      this.buf.set(data.subarray(0, i), this.nbuf);
      this.nbuf += i;
      if (this.nbuf < 64) return this;
      this._block(this.buf, 0);
      this.nbuf = 0;
    }
    for (; i + 64 <= n; i += 64) this._block(data, i); // whole blocks straight from the input, no copy
    if (i < n) {
      this.buf.set(data.subarray(i), 0);
      this.nbuf = n - i;
    }
    return this;
  };

  // -> lowercase hex; the hasher is finished afterwards
  Sha256.prototype.digest = function () {
    const buf = this.buf, bits = this.length * 8;
    buf[this.nbuf++] = 0x80;
    if (this.nbuf > 56) {
      buf.fill(0, this.nbuf);
      this._block(buf, 0);
      this.nbuf = 0;
    }
    buf.fill(0, this.nbuf, 56);
    const hi = Math.floor(bits / 0x100000000), lo = bits >>> 0;
    for (let i = 0; i < 4; i++) {
      buf[56 + i] = hi >>> (24 - 8 * i);
      buf[60 + i] = lo >>> (24 - 8 * i);
    }
    this._block(buf, 0);
    let hex = "";
    for (let i = 0; i < 8; i++) hex += (this.h[i] >>> 0).toString(16).padStart(8, "0");
    return hex;
  };

  // ---- helpers ----
  function short(hex) {
    return hex ? hex.slice(0, 12) + "…" : "(none)";
  }

  function absolute(url) {
    return new URL(url, self.location.href).href; // page and worker then share one cache key
  }

  function abortError(signal) {
    if (signal && signal.reason instanceof Error) return signal.reason;
    return new DOMException("the model download was aborted", "AbortError");
  }

  async function openCache() {
    if (typeof self.caches === "undefined") {
      return { cache: null, error: "Cache Storage is unavailable here (not a secure context?)" };
    }
    try {
      return { cache: await self.caches.open(CACHE_NAME), error: null };
    } catch (e) {
      return { cache: null, error: `Cache Storage cannot be opened: ${e && e.message ? e.message : e}` };
    }
  }

  // The body of the Response handed to cache.put: we push chunks in, with backpressure, and either close it
  // (commit) or error it (Cache Storage then discards the entry).
  function cacheWriter(cache, url, total, expected, onFail) {
    let ctrl, wake = null, failed = false;
    const release = () => { if (wake) { const w = wake; wake = null; w(); } };
    const stream = new ReadableStream(
      { start: (c) => { ctrl = c; }, pull: release, cancel: () => { failed = true; release(); } },
      new ByteLengthQueuingStrategy({ highWaterMark: CACHE_QUEUE_BYTES }),
    );
    const headers = { "Content-Type": "application/octet-stream", [H_AT]: new Date().toISOString() };
    if (total != null) {
      headers["Content-Length"] = String(total);
      headers[H_SIZE] = String(total);
    }
    // headers are taken when put() starts, so only a hash known up front can be recorded: the expected one,
    // which the body is checked against before the entry commits
    if (expected) headers[H_SHA] = expected;
    const done = cache.put(url, new Response(stream, { status: 200, headers })).then(() => null, (e) => {
      failed = true;
      release();
      onFail(e);
      return e;
    });
    return {
      get failed() { return failed; },
      async push(chunk) {
        if (failed) return;
        ctrl.enqueue(chunk);
        if (ctrl.desiredSize <= 0 && !failed) await new Promise((r) => { wake = r; });
      },
      close() { if (!failed) ctrl.close(); },
      abandon(reason) {
        if (failed) return;
        failed = true;
        try { ctrl.error(reason); } catch (_) { /* already closed */ }
        release();
      },
      done,
    };
  }

  // The hash of a read, computed on another thread: this same file run as a worker (see its end), fed copies of
  // the chunks. The thread that reads a model is also the one that starts Python and the engine (the workers'),
  // and about a second of hashing per 100 MB there delayed Python's start by as much. At most HASH_QUEUE_BYTES
  // wait for the hashing thread before the read waits for it. Where no worker can be started (Node, a
  // Content-Security-Policy without worker-src), the hash is computed here, as before.
  const HASH_WORKER = "pocketmind-sha256";
  const HASH_QUEUE_BYTES = 8 << 20;
  const SCRIPT_URL = typeof document !== "undefined" && document.currentScript ? document.currentScript.src
    : (typeof WorkerGlobalScope !== "undefined" ? new URL("model-store.js", self.location.href).href : null);

  function localHasher() {
    const hasher = new Sha256();
    return { update: (chunk) => { hasher.update(chunk); }, digest: async () => hasher.digest(), abandon: () => {} };
  }

  function newHasher() {
    let worker;
    try {
      if (typeof Worker !== "function" || !SCRIPT_URL) return localHasher();
      worker = new Worker(SCRIPT_URL, { name: HASH_WORKER });
    } catch (_) {
      return localHasher();
    }
    let queued = 0;
    let resume = null; // the read waiting for the queue to drain
    let failure = null;
    let settle;
    const result = new Promise((resolve, reject) => { settle = { resolve, reject }; });
    result.catch(() => {}); // awaited by digest() or reported by update()
    const fail = (message) => {
      failure = failure || new Error(`the model's sha256 could not be computed: ${message}`);
      settle.reject(failure);
      if (resume) resume();
      worker.terminate();
    };
    worker.onmessage = ({ data }) => {
      if (data.hashed != null) {
        queued -= data.hashed;
        if (resume && queued <= HASH_QUEUE_BYTES) { resume(); resume = null; }
      } else if (data.sha256) {
        settle.resolve(data.sha256);
        worker.terminate();
      }
    };
    worker.onerror = (e) => { e.preventDefault(); fail(e.message || "its worker failed"); };
    return {
      async update(chunk) {
        if (failure) throw failure;
        queued += chunk.length;
        worker.postMessage(chunk); // a copy: the sink and the cache writer still use this chunk
        if (queued > HASH_QUEUE_BYTES) await new Promise((r) => { resume = r; });
        if (failure) throw failure;
      },
      digest() {
        if (!failure) worker.postMessage(null);
        return result;
      },
      abandon: () => worker.terminate(),
    };
  }

  // ---- block digests: the SHA-256 of every 4 MiB block, by WebCrypto ----
  // One record per stored model, {sha256, size, block, digests: [hex, ...]}, keyed by the model's URL: it is bound
  // to the model's whole-file sha256 and size, so a record of another version of the file is never used.
  const BLOCKS_CACHE = "pocketmind-model-blocks-v1";
  const BLOCK_BYTES = 4 << 20;
  const BLOCKS_IN_FLIGHT = 4; // blocks (copies) waiting for WebCrypto before the read waits for it
  const subtle = self.crypto && self.crypto.subtle;

  const sha256Hex = async (bytes) =>
    Array.from(new Uint8Array(await subtle.digest("SHA-256", bytes)), (b) => b.toString(16).padStart(2, "0")).join("");

  function blockDigester() {
    const block = new Uint8Array(BLOCK_BYTES); // reused: digest() copies its input when called
    let filled = 0;
    const digests = [];
    let pending = [];
    const flush = () => {
      const digest = sha256Hex(block.subarray(0, filled));
      digest.catch(() => {}); // awaited by digests()
      digests.push(digest);
      pending.push(digest);
      filled = 0;
    };
    return {
      async update(chunk) {
        for (let at = 0; at < chunk.length;) {
          const n = Math.min(BLOCK_BYTES - filled, chunk.length - at);
          block.set(chunk.subarray(at, at + n), filled);
          filled += n;
          at += n;
          if (filled === BLOCK_BYTES) flush();
        }
        if (pending.length > BLOCKS_IN_FLIGHT) {
          await pending[0];
          pending = pending.slice(1);
        }
      },
      digests() {
        if (filled) flush();
        return Promise.all(digests);
      },
    };
  }

  async function openBlocks() {
    try {
      return await self.caches.open(BLOCKS_CACHE);
    } catch (_) {
      return null;
    }
  }

  // The record of url if it belongs to the model with this sha256 and size, else null (missing, foreign or damaged).
  async function blockRecord(url, sha256, size) {
    const blocks = subtle ? await openBlocks() : null;
    const response = blocks ? await blocks.match(url) : null;
    if (!response) return null;
    try {
      const r = await response.json();
      const count = Math.ceil(size / r.block);
      const fits = r.sha256 === sha256 && r.size === size && r.block === BLOCK_BYTES && Array.isArray(r.digests) &&
        r.digests.length === count && r.digests.every((d) => /^[0-9a-f]{64}$/.test(d));
      return fits ? r : null;
    } catch (_) {
      return null;
    }
  }

  // Keep the record of a model just stored or checked whole; without it later reads hash the whole file again.
  async function keepBlockRecord(url, sha256, size, digests) {
    const blocks = await openBlocks();
    if (!blocks) return;
    const record = JSON.stringify({ sha256, size, block: BLOCK_BYTES, digests });
    await blocks.put(url, new Response(record, { headers: { "Content-Type": "application/json" } }))
      .catch(() => {});
  }

  async function forgetBlockRecord(url) {
    const blocks = await openBlocks();
    if (blocks) await blocks.delete(url);
  }

  // Reads a body into the sink (or a buffer we own), hashing on the way. Returns {bytes, size, sha256, blocks}:
  // check.whole: the whole file's sha256 (else sha256 is null); check.blocks: the digests of its 4 MiB blocks
  // (else blocks is null).
  async function pump(body, total, opts, fromCache, writer, notify, check = { whole: true, blocks: false }) {
    const { sink, onProgress, signal } = opts;
    let own = null, parts = null;
    if (!sink) {
      if (total != null) own = new Uint8Array(total);
      else parts = []; // size unknown: collected and joined at the end (briefly two copies)
    }
    const hasher = check.whole ? newHasher() : null;
    const blocks = check.blocks && subtle ? blockDigester() : null;
    const reader = body.getReader();
    let loaded = 0;
    if (onProgress) onProgress(0, total, { fromCache });
    try {
      for (;;) {
        if (signal && signal.aborted) throw abortError(signal);
        let step;
        try {
          step = await reader.read();
        } catch (e) {
          if (signal && signal.aborted) throw abortError(signal);
          throw notify(e);
        }
        if (step.done) break;
        const chunk = step.value;
        if (total != null && loaded + chunk.length > total) {
          throw notify(new Error(`${opts.url} is larger than its announced ${total} bytes`));
        }
        if (hasher) await hasher.update(chunk);
        if (blocks) await blocks.update(chunk);
        if (writer) await writer.push(chunk);
        if (sink) {
          const r = sink(chunk, loaded, total);
          if (r && typeof r.then === "function") await r;
        } else if (own) own.set(chunk, loaded);
        else parts.push(chunk);
        loaded += chunk.length;
        if (onProgress) onProgress(loaded, total, { fromCache });
      }
    } catch (e) {
      reader.cancel(e).catch(() => {});
      if (hasher) hasher.abandon();
      throw e;
    }
    if (total != null && loaded !== total) {
      if (hasher) hasher.abandon();
      throw notify(new Error(`${opts.url} ended after ${loaded} of ${total} bytes`));
    }
    if (parts) {
      own = new Uint8Array(loaded);
      let at = 0;
      for (const p of parts) { own.set(p, at); at += p.length; }
      parts = null;
    }
    return { bytes: own, size: loaded, sha256: hasher ? await hasher.digest() : null,
             blocks: blocks ? await blocks.digests() : null };
  }

  function mismatch(url, expected, actual) {
    return new Error(`the model's hash does not match: ${url} has sha256 ${short(actual)}, ` +
      `expected ${short(expected)}`);
  }

  // A cached copy that fails its checks: the caller deletes it and downloads again.
  class CorruptEntry extends Error {}

  async function fromCacheEntry(response, url, expected, opts) {
    const storedSha = (response.headers.get(H_SHA) || "").toLowerCase() || null;
    const storedSize = Number(response.headers.get(H_SIZE) || response.headers.get("Content-Length")) || null;
    if (expected && storedSha && storedSha !== expected) {
      throw new CorruptEntry(`the cached copy has sha256 ${short(storedSha)}, expected ${short(expected)}`);
    }
    if (opts.size != null && storedSize != null && storedSize !== opts.size) {
      throw new CorruptEntry(`the cached copy has ${storedSize} bytes, expected ${opts.size}`);
    }
    const want = expected || storedSha; // without an expected hash, the one recorded at download time
    const total = storedSize != null ? storedSize : (opts.size != null ? opts.size : null);
    const record = want && total != null ? await blockRecord(url, want, total) : null;
    const got = await pump(response.body, total, { ...opts, url }, true, null, (e) => new CorruptEntry(e.message),
      { whole: !record, blocks: Boolean(want && total != null) });
    if (record) {
      const bad = record.digests.findIndex((d, i) => got.blocks[i] !== d);
      if (bad >= 0) {
        const from = bad * BLOCK_BYTES, to = Math.min(from + BLOCK_BYTES, total) - 1;
        throw new CorruptEntry(`the cached copy has sha256 ${short(got.blocks[bad])} in bytes ${from}-${to}, ` +
          `expected ${short(record.digests[bad])}`);
      }
      return { ...got, sha256: want };
    }
    if (want && got.sha256 !== want) {
      throw new CorruptEntry(`the cached copy has sha256 ${short(got.sha256)}, expected ${short(want)}`);
    }
    if (got.blocks) await keepBlockRecord(url, want, total, got.blocks); // the next read checks blocks
    return got;
  }

  async function download(url, cache, cacheError, expected, opts) {
    const { signal } = opts;
    let response;
    try {
      response = await fetch(url, { signal, cache: "no-store" }); // no-store: the HTTP cache would be a 2nd copy
    } catch (e) {
      if (signal && signal.aborted) throw abortError(signal);
      throw new Error(`download of ${url} failed: ${e && e.message ? e.message : e}`);
    }
    if (!response.ok) throw new Error(`download of ${url} failed: HTTP ${response.status}`);
    // a compressed transfer's Content-Length is not the model's size
    const announced = response.headers.get("Content-Encoding")
      ? null
      : Number(response.headers.get("Content-Length")) || null;
    if (opts.size != null && announced != null && announced !== opts.size) {
      response.body.cancel().catch(() => {});
      throw new Error(`${url} is ${announced} bytes, expected ${opts.size}`);
    }
    const total = opts.size != null ? opts.size : announced;
    let storeError = cache ? null : cacheError;
    const onStoreFail = (e) => { storeError = describeStoreError(e); };
    const writer = cache ? cacheWriter(cache, url, total, expected, onStoreFail) : null;
    let got;
    try {
      got = await pump(response.body, total, { ...opts, url }, false, writer, (e) => e,
        { whole: true, blocks: Boolean(writer && expected) });
      if (expected && got.sha256 !== expected) throw mismatch(url, expected, got.sha256);
    } catch (e) {
      if (writer) {
        writer.abandon(e);
        await writer.done;
      }
      throw e;
    }
    let stored = false;
    if (writer && !writer.failed) {
      writer.close(); // the body is complete and verified: only now may the entry commit
      stored = (await writer.done) === null;
      if (stored && got.blocks) await keepBlockRecord(url, expected, got.size, got.blocks);
    }
    return { ...got, stored, storeError: stored ? null : storeError };
  }

  function describeStoreError(e) {
    const name = e && e.name;
    const message = e && e.message ? e.message : String(e);
    if (name === "QuotaExceededError") return `not enough storage space (${message})`;
    return message;
  }

  function normalizeHex(sha) {
    if (sha == null || sha === "") return null;
    const hex = String(sha).trim().toLowerCase();
    if (!/^[0-9a-f]{64}$/.test(hex)) {
      throw new Error(`expected sha256 must be 64 hex digits, got ${JSON.stringify(sha)}`);
    }
    return hex;
  }

  // fetchModel(url, {sha256, size, sink, onProgress, signal}) -> {url, bytes, size, sha256, fromCache, stored,
  //   storeError, cacheError}. See the report at the top of the file for the memory behaviour.
  async function fetchModel(url, opts = {}) {
    url = absolute(url);
    const expected = normalizeHex(opts.sha256);
    const { cache, error: cacheError } = await openCache();
    let discarded = null; // why a cached copy was thrown away, for the UI
    if (cache) {
      const hit = await cache.match(url);
      if (hit) {
        try {
          const got = await fromCacheEntry(hit, url, expected, opts);
          return { url, bytes: got.bytes, size: got.size, sha256: got.sha256, fromCache: true, stored: true,
            storeError: null, cacheError: null };
        } catch (e) {
          if (!(e instanceof CorruptEntry)) throw e;
          discarded = e.message;
          await cache.delete(url);
          await forgetBlockRecord(url);
        }
      }
    }
    const got = await download(url, cache, cacheError, expected, opts);
    return { url, bytes: got.bytes, size: got.size, sha256: got.sha256, fromCache: false, stored: got.stored,
      storeError: got.storeError, cacheError: discarded };
  }

  // -> {url, size, sha256}; throws where Cache Storage is unavailable or full
  async function storeModel(url, bytes) {
    url = absolute(url);
    const { cache, error } = await openCache();
    if (!cache) throw new Error(error);
    const sha256 = new Sha256().update(bytes).digest();
    const headers = { "Content-Type": "application/octet-stream", "Content-Length": String(bytes.length),
      [H_SIZE]: String(bytes.length), [H_SHA]: sha256, [H_AT]: new Date().toISOString() };
    try {
      await forgetBlockRecord(url); // a record of what was stored under url before
      await cache.put(url, new Response(bytes, { status: 200, headers }));
    } catch (e) {
      throw new Error(`cannot keep ${url}: ${describeStoreError(e)}`);
    }
    if (subtle) {
      const digester = blockDigester();
      for (let at = 0; at < bytes.length; at += BLOCK_BYTES) {
        await digester.update(bytes.subarray(at, at + BLOCK_BYTES));
      }
      await keepBlockRecord(url, sha256, bytes.length, await digester.digests());
    }
    return { url, size: bytes.length, sha256 };
  }

  // -> [{url, size, sha256, storedAt}] (size and sha256 null where unknown), in storage order
  async function listModels() {
    const { cache } = await openCache();
    if (!cache) return [];
    const out = [];
    for (const request of await cache.keys()) {
      const response = await cache.match(request);
      if (!response) continue; // deleted meanwhile
      const h = response.headers;
      out.push({
        url: request.url,
        size: Number(h.get(H_SIZE) || h.get("Content-Length")) || null,
        sha256: h.get(H_SHA) || null,
        storedAt: h.get(H_AT) || null,
      });
      if (response.body) response.body.cancel().catch(() => {}); // only the headers were wanted
    }
    return out;
  }

  // -> true when url is in the store (its bytes not checked: fetchModel does that)
  async function hasModel(url) {
    const { cache } = await openCache();
    const response = cache ? await cache.match(absolute(url)) : null;
    if (response && response.body) response.body.cancel().catch(() => {});
    return Boolean(response);
  }

  // -> true when an entry was removed
  async function deleteModel(url) {
    const { cache } = await openCache();
    if (!cache) return false;
    await forgetBlockRecord(absolute(url));
    return cache.delete(absolute(url));
  }

  // -> {usage, quota} in bytes, or null where the browser cannot say
  async function storageEstimate() {
    const storage = self.navigator && self.navigator.storage;
    if (!storage || typeof storage.estimate !== "function") return null;
    try {
      const { usage, quota } = await storage.estimate();
      return { usage: usage == null ? null : usage, quota: quota == null ? null : quota };
    } catch (_) {
      return null;
    }
  }

  // -> whether storage is (now) persistent, or null where persist() is unavailable (e.g. in workers)
  async function requestPersistence() {
    const storage = self.navigator && self.navigator.storage;
    if (!storage || typeof storage.persist !== "function") return null;
    try {
      return Boolean(await storage.persist());
    } catch (_) {
      return null;
    }
  }

  return { CACHE_NAME, BLOCKS_CACHE, Sha256, sha256Hex, fetchModel, storeModel, listModels, hasModel, deleteModel,
           storageEstimate, requestPersistence };
})();

if (typeof self !== "undefined") self.pocketmindModelStore = pocketmindModelStore;

// Run as the hashing worker of a read (newHasher): chunks in, how many bytes were hashed back, then the digest.
if (typeof WorkerGlobalScope !== "undefined" && self.name === "pocketmind-sha256") {
  const hasher = new pocketmindModelStore.Sha256();
  self.onmessage = ({ data }) => {
    if (data === null) {
      postMessage({ sha256: hasher.digest() });
    } else {
      hasher.update(data);
      postMessage({ hashed: data.length });
    }
  };
}
