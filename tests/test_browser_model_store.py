"""site/model-store.js in headless Chromium: a model is downloaded once with progress, verified by sha256, kept in
Cache Storage and loaded from there on the next visit without the network; bad hashes, corrupt cache entries and
a full disk are handled; the same works in a worker through importScripts; its JS SHA-256 equals WebCrypto's."""
from __future__ import annotations

import hashlib
import random
import shutil
from pathlib import Path

import pytest

REPO_SITE = Path(__file__).resolve().parents[1] / "site"

pytestmark = pytest.mark.browser

STEP_MS = 30_000  # every evaluated promise is raced against this in the page, so a failure never hangs

PAGE_HTML = """<!doctype html>
<meta charset="utf-8">
<title>model store test</title>
<script src="model-store.js"></script>
<script>
"use strict";
window.bounded = (fn, ms, what) => {
  let timer;
  const late = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not finish within ${ms} ms`)), ms);
  });
  return Promise.race([Promise.resolve().then(fn), late]).finally(() => clearTimeout(timer));
};
window.hex = async (bytes) =>
  [...new Uint8Array(await crypto.subtle.digest("SHA-256", bytes))]
    .map((b) => b.toString(16).padStart(2, "0")).join("");
// fetchModel, reduced to what can cross into Python
window.load = async (url, opts = {}) => {
  const events = [];
  const r = await pocketmindModelStore.fetchModel(url, {
    ...opts,
    onProgress: (loaded, total, info) => events.push([loaded, total, info.fromCache]),
  });
  const length = r.bytes ? r.bytes.length : null;
  return { ...r, bytes: null, length, digest: r.bytes ? await hex(r.bytes) : null, events };
};
window.loadError = (url, opts) => load(url, opts).then(() => null, (e) => `${e.name}: ${e.message}`);
window.cached = async (url) => {
  const cache = await caches.open(pocketmindModelStore.CACHE_NAME);
  return Boolean(await cache.match(new URL(url, location.href).href));
};
// a fresh worker per call: the second one knows nothing the first one had in memory
window.inWorker = (job) => new Promise((resolve, reject) => {
  const w = new Worker("worker.js");
  w.onmessage = ({ data }) => { w.terminate(); data.error ? reject(new Error(data.error)) : resolve(data); };
  w.onerror = (e) => { w.terminate(); reject(new Error(`worker: ${e.message}`)); };
  w.postMessage(job);
});
</script>
"""

# Stands in for the engine: a destination it owns ("wasm memory"), filled through the sink.
WORKER_JS = """
"use strict";
importScripts("model-store.js");
self.onmessage = async ({ data }) => {
  try {
    let memory = null;
    const offsets = [];
    const events = [];
    const r = await pocketmindModelStore.fetchModel(data.url, {
      sha256: data.sha256,
      sink: (chunk, offset, total) => {
        if (offset === 0) memory = new Uint8Array(total);
        memory.set(chunk, offset);
        offsets.push(offset);
      },
      onProgress: (loaded, total, info) => events.push([loaded, total, info.fromCache]),
    });
    const digest = [...new Uint8Array(await crypto.subtle.digest("SHA-256", memory))]
      .map((b) => b.toString(16).padStart(2, "0")).join("");
    const ordered = offsets.every((o, i) => i === 0 || o > offsets[i - 1]);
    postMessage({
      fromCache: r.fromCache, stored: r.stored, bytesIsNull: r.bytes === null, size: r.size, digest, ordered,
      chunks: offsets.length, events, global: typeof pocketmindModelStore,
      persistence: await pocketmindModelStore.requestPersistence(),
    });
  } catch (e) {
    postMessage({ error: String(e && e.message ? e.message : e) });
  }
};
"""


@pytest.fixture(scope="module")
def store_site(tmp_path_factory, tiny_models, serve_site):
    folder = tmp_path_factory.mktemp("model-store")
    shutil.copy2(tiny_models["F16"], folder / "model.gguf")
    # bigger than the cache writer's 8 MiB queue, so its backpressure is exercised
    (folder / "big.bin").write_bytes(random.Random(7).randbytes(20 << 20))
    shutil.copy2(REPO_SITE / "model-store.js", folder / "model-store.js")
    # not index.html: the site server sends that name the chat page's CSP header, which forbids inline scripts
    (folder / "harness.html").write_text(PAGE_HTML)
    (folder / "worker.js").write_text(WORKER_JS)
    files = {name: (folder / name).read_bytes() for name in ("model.gguf", "big.bin")}
    return {
        "base": serve_site(folder),
        "folder": folder,
        "sha": {name: hashlib.sha256(data).hexdigest() for name, data in files.items()},
        "size": {name: len(data) for name, data in files.items()},
    }


@pytest.fixture
def store(page, store_site):
    """The test page, opened, with a record of every request the browser context makes."""
    errors, requests = [], []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.context.on("request", lambda r: requests.append(r.url))
    page.goto(store_site["base"] + "harness.html")
    run(page, "() => Promise.all([pocketmindModelStore.CACHE_NAME, pocketmindModelStore.BLOCKS_CACHE]"
              ".map((name) => caches.delete(name)))")
    yield {**store_site, "page": page, "requests": requests}
    assert not errors, errors


def run(page, fn: str, arg=None, ms: int = STEP_MS):
    """Evaluate an (async) function in the page, bounded by ms."""
    return page.evaluate(f"([arg, ms]) => bounded(() => ({fn})(arg), ms, {fn!r})", [arg, ms])


def model_requests(s, name="model.gguf"):
    return [u for u in s["requests"] if u == s["base"] + name]


def check_progress(events, size, from_cache):
    assert events[0] == [0, size, from_cache]
    assert events[-1] == [size, size, from_cache]
    loaded = [e[0] for e in events]
    assert loaded == sorted(loaded)


def test_first_visit_downloads_second_visit_reads_the_cache(store):
    page, sha, size = store["page"], store["sha"]["model.gguf"], store["size"]["model.gguf"]
    first = run(page, "(a) => load('model.gguf', a)", {"sha256": sha})
    assert (first["fromCache"], first["stored"], first["storeError"], first["cacheError"]) == (False, True, None, None)
    assert first["digest"] == first["sha256"] == sha and first["length"] == first["size"] == size
    check_progress(first["events"], size, False)
    assert len(model_requests(store)) == 1

    listed = run(page, "() => pocketmindModelStore.listModels()")
    assert listed == [{"url": store["base"] + "model.gguf", "size": size, "sha256": sha,
                       "storedAt": listed[0]["storedAt"]}]
    assert listed[0]["storedAt"]

    page.reload()  # a second visit: nothing left in page memory
    store["requests"].clear()
    second = run(page, "(a) => load('model.gguf', a)", {"sha256": sha})
    assert (second["fromCache"], second["stored"], second["cacheError"]) == (True, True, None)
    assert second["digest"] == sha and second["length"] == size
    check_progress(second["events"], size, True)
    # without an expected hash, the one recorded at download time still checks the cached bytes
    third = run(page, "() => load('model.gguf')")
    assert third["fromCache"] and third["digest"] == sha
    assert model_requests(store) == []


def test_a_wrong_hash_is_a_readable_error_and_stores_nothing(store):
    page, sha = store["page"], store["sha"]["model.gguf"]
    wrong = "0123456789ab" + "0" * 52
    message = run(page, "(a) => loadError('model.gguf', a)", {"sha256": wrong})
    assert message.startswith("Error: the model's hash does not match"), message
    assert "expected 0123456789ab" in message and sha[:12] in message
    assert run(page, "() => cached('model.gguf')") is False
    assert run(page, "() => pocketmindModelStore.listModels()") == []
    bad = run(page, "() => loadError('model.gguf', {sha256: 'abc'})")
    assert "64 hex digits" in bad


def test_a_corrupt_cache_entry_is_deleted_and_downloaded_again(store):
    page, sha, size = store["page"], store["sha"]["model.gguf"], store["size"]["model.gguf"]
    run(page, "(a) => load('model.gguf', a)", {"sha256": sha})
    # flip one byte in the stored body, keeping its headers (recorded hash and size) as they were
    run(page, """async () => {
        const cache = await caches.open(pocketmindModelStore.CACHE_NAME);
        const key = new URL('model.gguf', location.href).href;
        const entry = await cache.match(key);
        const bytes = new Uint8Array(await entry.arrayBuffer());
        bytes[bytes.length >> 1] ^= 0x55;
        await cache.put(key, new Response(bytes, {headers: entry.headers}));
    }""")
    store["requests"].clear()
    again = run(page, "(a) => load('model.gguf', a)", {"sha256": sha})
    assert (again["fromCache"], again["stored"], again["digest"]) == (False, True, sha)
    assert "cached copy has sha256" in again["cacheError"]
    assert len(model_requests(store)) == 1
    check_progress(again["events"][again["events"].index([0, size, False]):], size, False)
    store["requests"].clear()
    assert run(page, "(a) => load('model.gguf', a)", {"sha256": sha})["fromCache"] is True
    assert model_requests(store) == []


def test_delete_model_removes_it(store):
    page, sha = store["page"], store["sha"]["model.gguf"]
    run(page, "(a) => load('model.gguf', a)", {"sha256": sha})
    assert [m["url"] for m in run(page, "() => pocketmindModelStore.listModels()")] == [store["base"] + "model.gguf"]
    assert run(page, "() => pocketmindModelStore.deleteModel('model.gguf')") is True
    assert run(page, "() => pocketmindModelStore.deleteModel('model.gguf')") is False
    assert run(page, "() => pocketmindModelStore.listModels()") == []
    store["requests"].clear()
    assert run(page, "(a) => load('model.gguf', a)", {"sha256": sha})["fromCache"] is False
    assert len(model_requests(store)) == 1


@pytest.mark.parametrize("when", ["at once", "mid-stream"])
def test_a_full_disk_does_not_fail_the_load(store, when):
    page, sha = store["page"], store["sha"]["big.bin"]
    # Chromium's real quota cannot be filled in a test: Cache.put is replaced by one that fails like a full disk
    run(page, """(when) => {
        Cache.prototype.put = async function (request, response) {
            if (when === 'mid-stream') await response.body.getReader().read();  // takes a chunk, then gives up
            throw new DOMException('the quota has been exceeded (simulated)', 'QuotaExceededError');
        };
    }""", when)
    result = run(page, "(a) => load('big.bin', a)", {"sha256": sha})
    assert (result["digest"], result["fromCache"], result["stored"]) == (sha, False, False)
    assert result["storeError"] == "not enough storage space (the quota has been exceeded (simulated))"
    assert run(page, "() => pocketmindModelStore.listModels()") == []


def test_an_aborted_download_stores_nothing(store):
    page, sha = store["page"], store["sha"]["big.bin"]
    message = run(page, """(sha256) => {
        const controller = new AbortController();
        // abort after the first chunk has gone by
        return pocketmindModelStore.fetchModel('big.bin', {sha256, signal: controller.signal,
                                                           sink: () => controller.abort()})
            .then(() => null, (e) => e.name);
    }""", sha)
    assert message == "AbortError"
    assert run(page, "() => cached('big.bin')") is False


def test_in_a_worker_chunks_go_into_the_callers_memory(store):
    page = store["page"]
    for name in ("model.gguf", "big.bin"):
        sha, size = store["sha"][name], store["size"][name]
        store["requests"].clear()
        first = run(page, "(job) => inWorker(job)", {"url": name, "sha256": sha})
        assert first["global"] == "object" and first["bytesIsNull"] and first["ordered"]
        assert (first["fromCache"], first["stored"], first["digest"], first["size"]) == (False, True, sha, size)
        check_progress(first["events"], size, False)
        assert first["persistence"] is None  # navigator.storage.persist is a page-only API
        assert len(model_requests(store, name)) == 1  # the worker's requests are seen
        store["requests"].clear()
        second = run(page, "(job) => inWorker(job)", {"url": name, "sha256": sha})
        assert (second["fromCache"], second["digest"]) == (True, sha)
        check_progress(second["events"], size, True)
        assert model_requests(store, name) == []


# Every Worker the page starts from now on, by name; name "pocketmind-sha256" can be made to fail on its first chunk.
SPY_WORKERS = """(failing) => {
    const Original = window.__OriginalWorker = window.__OriginalWorker || window.Worker;
    window.startedWorkers = [];
    window.Worker = function (url, options = {}) {
        window.startedWorkers.push(options.name || "");
        if (failing && options.name === "pocketmind-sha256") {
            const script = "self.onmessage = () => { throw new Error('no hashing here'); };";
            return new Original(URL.createObjectURL(new Blob([script], {type: "text/javascript"})));
        }
        return new Original(url, options);
    };
}"""


# The record of a stored model's block digests, or null.
BLOCK_RECORD = """async (name) => {
    const blocks = await caches.open(pocketmindModelStore.BLOCKS_CACHE);
    const response = await blocks.match(new URL(name, location.href).href);
    return response ? response.json() : null;
}"""
FORGET_BLOCK_RECORD = """async (name) =>
    (await caches.open(pocketmindModelStore.BLOCKS_CACHE)).delete(new URL(name, location.href).href)"""


def block_digests(data: bytes) -> list[str]:
    return [hashlib.sha256(data[at:at + (4 << 20)]).hexdigest() for at in range(0, len(data), 4 << 20)]


def test_the_hash_is_computed_on_another_thread_and_its_failure_is_a_readable_error(store):
    page = store["page"]
    sha, size = store["sha"]["big.bin"], store["size"]["big.bin"]
    run(page, SPY_WORKERS, False)
    first = run(page, "(a) => load('big.bin', a)", {"sha256": sha})  # 20 MiB: more than the hasher's 8 MiB queue
    assert run(page, "() => window.startedWorkers") == ["pocketmind-sha256"]
    run(page, FORGET_BLOCK_RECORD, "big.bin")  # as if stored by a version without block digests: hashed whole
    second = run(page, "(a) => load('big.bin', a)", {"sha256": sha})
    assert (first["fromCache"], second["fromCache"]) == (False, True)
    assert first["sha256"] == second["sha256"] == second["digest"] == sha and second["length"] == size
    assert run(page, "() => window.startedWorkers") == ["pocketmind-sha256"] * 2  # one per whole-file hash

    run(page, FORGET_BLOCK_RECORD, "big.bin")
    run(page, SPY_WORKERS, True)
    message = run(page, "(a) => loadError('big.bin', a)", {"sha256": sha})
    assert "the model's sha256 could not be computed" in message and "no hashing here" in message, message
    assert run(page, "() => cached('big.bin')") is True  # the stored copy is not taken for a corrupt one


def test_a_stored_model_is_checked_by_its_blocks_with_webcrypto_and_a_damaged_block_is_named(store):
    page, sha, size = store["page"], store["sha"]["big.bin"], store["size"]["big.bin"]
    data = (store["folder"] / "big.bin").read_bytes()
    run(page, "(a) => load('big.bin', a)", {"sha256": sha})
    assert run(page, BLOCK_RECORD, "big.bin") == {"sha256": sha, "size": size, "block": 4 << 20,
                                                  "digests": block_digests(data)}
    run(page, SPY_WORKERS, False)
    again = run(page, "(a) => load('big.bin', a)", {"sha256": sha})
    assert (again["fromCache"], again["sha256"], again["digest"]) == (True, sha, sha)
    check_progress(again["events"], size, True)
    assert run(page, "() => window.startedWorkers") == []  # no whole-file hash: WebCrypto checked the blocks

    # one byte changed in the third block, headers and record kept: that block is named, the model fetched again
    run(page, """async () => {
        const cache = await caches.open(pocketmindModelStore.CACHE_NAME);
        const key = new URL('big.bin', location.href).href;
        const entry = await cache.match(key);
        const bytes = new Uint8Array(await entry.arrayBuffer());
        bytes[(9 << 20) + 5] ^= 0x01;
        await cache.put(key, new Response(bytes, {headers: entry.headers}));
    }""")
    store["requests"].clear()
    fixed = run(page, "(a) => load('big.bin', a)", {"sha256": sha})
    assert (fixed["fromCache"], fixed["stored"], fixed["digest"]) == (False, True, sha)
    assert f"in bytes {8 << 20}-{(12 << 20) - 1}, expected {block_digests(data)[2][:12]}" in fixed["cacheError"]
    assert len(model_requests(store, "big.bin")) == 1
    assert run(page, BLOCK_RECORD, "big.bin")["digests"] == block_digests(data)

    # a damaged record is not trusted: the whole file is hashed, and the record written again
    run(page, """async () => (await caches.open(pocketmindModelStore.BLOCKS_CACHE)).put(
        new URL('big.bin', location.href).href, new Response('{"sha256": '))""")
    run(page, SPY_WORKERS, False)
    store["requests"].clear()
    whole = run(page, "(a) => load('big.bin', a)", {"sha256": sha})
    assert (whole["fromCache"], whole["digest"], whole["cacheError"]) == (True, sha, None)
    assert run(page, "() => window.startedWorkers") == ["pocketmind-sha256"]
    assert run(page, BLOCK_RECORD, "big.bin")["digests"] == block_digests(data)
    assert model_requests(store, "big.bin") == []

    # bytes a person chose (storeModel) get a record too; deleting the model deletes it
    kept = run(page, """async () => pocketmindModelStore.storeModel('kept.bin',
        new Uint8Array(await (await fetch('big.bin')).arrayBuffer()))""")
    assert kept["sha256"] == sha
    assert run(page, BLOCK_RECORD, "kept.bin")["digests"] == block_digests(data)
    assert run(page, "() => pocketmindModelStore.deleteModel('kept.bin')") is True
    assert run(page, BLOCK_RECORD, "kept.bin") is None


def test_storage_estimate_and_persistence(store):
    page = store["page"]
    estimate = run(page, "() => pocketmindModelStore.storageEstimate()")
    assert isinstance(estimate["usage"], (int, float)) and estimate["quota"] > 0
    assert run(page, "() => pocketmindModelStore.requestPersistence()") in (True, False)


def test_js_sha256_equals_webcrypto(store):
    sizes = [0, 1, 55, 56, 63, 64, 65, 119, 120, 1000, 3 << 20]
    results = run(store["page"], """async (sizes) => {
        const out = [];
        for (const n of sizes) {
            const data = new Uint8Array(n);
            for (let i = 0, x = n + 1; i < n; i++) { x = (Math.imul(x, 1103515245) + 12345) | 0; data[i] = x >>> 23; }
            const whole = new pocketmindModelStore.Sha256().update(data).digest();
            // uneven pieces cross every block-boundary case
            const pieces = new pocketmindModelStore.Sha256();
            const steps = [1, 63, 64, 65, 7, 1000, 4096];
            for (let i = 0, k = 0; i < n; k++) {
                const step = steps[k % steps.length];
                pieces.update(data.subarray(i, i + step));
                i += step;
            }
            out.push([n, whole, pieces.digest(), await hex(data)]);
        }
        return out;
    }""", sizes, ms=60_000)
    assert [r[0] for r in results] == sizes
    for n, whole, pieces, webcrypto in results:
        assert whole == pieces == webcrypto, n
    assert results[0][3] == hashlib.sha256(b"").hexdigest()
