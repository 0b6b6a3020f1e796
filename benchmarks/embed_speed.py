#!/usr/bin/env python3
"""Embedding speed, search latency and index size of the Search page against CPython, side by side in one run
(issue 9). Prints the tables and writes them to docs/embedding_speed.md:

1. all-MiniLM-L6-v2 (our GGUF conversions, Q8_0 and F16) embedding a fixed set of chunks: natively through
   `Embedder.embed` (1 and 2 threads) and in headless Chromium through the Search page's own path (files chosen in
   its file input, extracted, chunked and embedded in the worker, the index kept in IndexedDB), with the wasm
   single-thread engine (served without COOP/COEP) and the multi-thread one (served with them);
2. search latency over an index of 10 000 chunks (random unit vectors), natively and in the page's worker;
3. the bytes the kept index takes in the page's IndexedDB, per chunk;
4. transformers.js on the same chunks in the same Chromium, where its package and an ONNX export of the model can
   be had from a registry (see transformers_js.py; the doc says what was tried when they cannot).

    python3 benchmarks/embed_speed.py [--quick] [--quants Q8_0,F16] [--out docs/embedding_speed.md]

The chunks: the project's chunker (the service's defaults) over the license texts Debian ships in
/usr/share/common-licenses (English prose with headings and numbered sections, the same bytes on every Debian
machine; their sha256 is printed with the results).
"""
from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
for sub in ("", "wasm", "py", "benchmarks"):
    if str(REPO / sub) not in sys.path:
        sys.path.insert(0, str(REPO / sub))

import numpy as np  # noqa: E402

import build as wasm_build  # noqa: E402
import build_site  # noqa: E402
import deps  # noqa: E402
from browser_site import CHROMIUM, CHROMIUM_ARGS, bounded  # noqa: E402
from pocketmind import Model  # noqa: E402
from pocketmind.search.chunk import DEFAULT_MAX_CHARS, DEFAULT_OVERLAP, Chunk, chunk_text, paragraphs  # noqa: E402
from pocketmind.search.embed import Embedder  # noqa: E402
from pocketmind.search.extract import extract_text  # noqa: E402
from pocketmind.search.index import Index, file_sha256  # noqa: E402
from pocketmind.search_service import SearchService  # noqa: E402

LICENSES = Path("/usr/share/common-licenses")
CORPUS = ["Apache-2.0", "GPL-3", "MPL-2.0", "Artistic", "CC0-1.0"]  # ~110 chunks: the run stays near 15 minutes
QUICK_CORPUS = ["Apache-2.0", "Artistic"]
QUERIES = [
    "can I sell copies of the program", "what happens if I break the terms", "patent license granted by contributors",
    "must I publish the source code of my changes", "warranty disclaimer",
    "linking a library into a proprietary program",
    "how to apply these terms to a new program", "which court decides disputes", "trademarks are not licensed",
    "distributing the work in object code form", "invariant sections of a manual", "waiver of copyright worldwide",
    "notices that must be kept in modified files", "termination of the license after a violation",
    "installation information for consumer products", "relicensing under a later version",
    "the standard version and the package", "larger works combining covered software",
    "translations of the document", "the preamble of the license",
]


def corpus(quick: bool) -> list[tuple[str, bytes]]:
    return [(f"{name}.txt", (LICENSES / name).read_bytes()) for name in (QUICK_CORPUS if quick else CORPUS)]


def chunks_of(files: list[tuple[str, bytes]]) -> list[Chunk]:
    """The chunks the Search page's service makes of these files (same extraction, same chunker, same order)."""
    return [c for name, data in files
            for c in chunk_text(extract_text(name, data), name, DEFAULT_MAX_CHARS, DEFAULT_OVERLAP)]


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"{one:.2f}"


# ---------------------------------------------------------------------------------------------- native

def native_embed(model_path: Path, texts: list[str], threads: int) -> dict:
    model = Model.from_file(model_path)
    try:
        with Embedder(model, n_threads=threads) as embedder:
            embedder.embed(texts[:2])  # warm-up: first-call allocations
            before = load()
            t0 = time.perf_counter()
            embedder.embed(texts)
            seconds = time.perf_counter() - t0
            return {"seconds": seconds, "chunks_per_s": len(texts) / seconds, "load": f"{before}→{load()}"}
    finally:
        model.close()


def mean_tokens(model_path: Path, texts: list[str]) -> float:
    model = Model.from_file(model_path)
    try:
        with Embedder(model) as embedder:
            return statistics.mean(len(embedder.tokens(t)[0]) for t in texts)
    finally:
        model.close()


def synthetic_index(sha256: str, name: str, chunks: list[Chunk], n: int, dim: int) -> Index:
    """n chunks with random unit vectors (seed 0); their texts are the real chunks' texts over and over, so the
    stored size per chunk is that of real chunks."""
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((n, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    fake = []
    for i in range(n):
        c = chunks[i % len(chunks)]
        fake.append(Chunk(f"synthetic-{i // 100:03d}.txt", c.start, c.end, c.text))
    return Index(sha256, dim, name, fake, vectors)


def native_search(model_path: Path, index_bytes: bytes, queries: list[str], rounds: int) -> dict:
    """Median ms over the queries of: the service's whole search (embed the query + rank + JSON), embedding the
    query alone (embed_json), and Index.search alone on the query's vector (numpy)."""
    service = SearchService()
    try:
        service.set_embedder(Model.from_file(model_path), file_sha256(model_path), model_path.name)
        t0 = time.perf_counter()
        service.import_index(index_bytes)
        import_ms = (time.perf_counter() - t0) * 1000
        index = service.index
        vectors = [service.embedder.embed_one(q).vector for q in queries]
        full, embed, rank = [], [], []
        for _ in range(rounds):
            for q, v in zip(queries, vectors):
                t0 = time.perf_counter()
                service.search(json.dumps({"query": q, "top": 5}))
                t1 = time.perf_counter()
                service.embed_json(json.dumps([q]))
                t2 = time.perf_counter()
                index.search(v, 5)
                t3 = time.perf_counter()
                full.append(t1 - t0)
                embed.append(t2 - t1)
                rank.append(t3 - t2)
        ms = lambda xs: statistics.median(xs) * 1000  # noqa: E731
        return {"search_ms": ms(full), "embed_ms": ms(embed), "rank_ms": ms(rank),
                "derived_rank_ms": ms(full) - ms(embed), "import_ms": import_ms, "n": len(full)}
    finally:
        service.close()


# ---------------------------------------------------------------------------------------------- the page

def serve(stack: ExitStack, out: Path, headers: bool) -> str:
    server = build_site.make_server(out, headers=headers)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    stack.callback(server.server_close)
    stack.callback(server.shutdown)
    return f"http://127.0.0.1:{server.server_address[1]}/"


ESTIMATE = """async () => { const e = await navigator.storage.estimate();
    return { usage: e.usage, indexedDB: e.usageDetails ? (e.usageDetails.indexedDB || 0) : null }; }"""
RECORD = """async () => { const store = await import('./search-store.js'); const r = await store.loadIndex();
    return r ? { bytes: r.bytes.length, n_chunks: r.n_chunks } : null; }"""


def page_run(browser, url: str, files: list[tuple[str, bytes]], queries: list[str], rounds: int,
             index_url: str) -> dict:
    """One fresh browser profile (no service worker, so the server's headers alone pick the engine): open the Search
    page, choose the files, wait until the index is complete and kept; then the 10 000-chunk index's search latency and
    stored size."""
    context = browser.new_context(service_workers="block")
    # as a browser without service workers: offline.js then neither registers one nor reloads into isolation
    context.add_init_script("Object.defineProperty(Navigator.prototype, 'serviceWorker', { get: () => undefined });")
    try:
        page = context.new_page()
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        t0 = time.perf_counter()
        page.goto(url + "search.html")
        bounded(page, "() => window.pocketmindSearch.ready", ms=600_000)
        ready_s = time.perf_counter() - t0
        engine = page.evaluate("window.pocketmindSearch.client.engine")
        empty = bounded(page, ESTIMATE)

        page.evaluate("() => { window.pocketmindSearch.state.adding = null; }")
        before = load()
        t0 = time.perf_counter()
        page.set_input_files("#file", files=[{"name": name, "mimeType": "text/plain", "buffer": data}
                                             for name, data in files])
        # Boolean(): a predicate that returns the add's promise would make Playwright wait for the whole add
        page.wait_for_function("() => Boolean(window.pocketmindSearch.state.adding)", polling=250, timeout=60_000)
        done = bounded(page, "() => window.pocketmindSearch.state.adding", ms=1_800_000)
        wall_s = time.perf_counter() - t0
        after_load = load()
        stored = page.evaluate("window.pocketmindSearch.state.stored")
        record = bounded(page, RECORD)
        kept = bounded(page, ESTIMATE)

        # the synthetic index, fetched from the server and imported through the page's own call
        t0 = time.perf_counter()
        info = json.loads(bounded(page, """async (u) => {
            const b = new Uint8Array(await (await fetch(u)).arrayBuffer());
            return window.pocketmindSearch.client.call('import_index', b); }""", index_url))
        import_s = time.perf_counter() - t0
        timings = bounded(page, """async ([queries, rounds]) => {
            const c = window.pocketmindSearch.client, full = [], embed = [];
            for (let r = 0; r < rounds; r++) for (const q of queries) {
              let t = performance.now();
              await c.call('search', JSON.stringify({ query: q, top: 5 }));
              full.push(performance.now() - t);
              t = performance.now();
              await c.call('embed_json', JSON.stringify([q]));
              embed.push(performance.now() - t);
            }
            return { full, embed }; }""", [queries, rounds])
        big_keep = bounded(page, "() => window.pocketmindSearch.keep()", ms=300_000)
        big_record = bounded(page, RECORD)
        big = bounded(page, ESTIMATE)
        return {"engine": engine, "ready_s": ready_s, "done": done, "wall_s": wall_s,
                "load": f"{before}→{after_load}",
                "stored": stored, "record": record, "estimate": {"empty": empty, "kept": kept, "big": big},
                "big_n": info["n_chunks"], "big_keep": big_keep, "big_record": big_record, "import_s": import_s,
                "search_ms": statistics.median(timings["full"]), "embed_ms": statistics.median(timings["embed"]),
                "n_queries": len(timings["full"]), "errors": errors}
    finally:
        context.close()


# ---------------------------------------------------------------------------------------------- report

def mb(n: float) -> str:
    return f"{n / 1048576:.2f} MB"


def derived(search_ms: float, embed_ms: float) -> str:
    """The ranking's share of a search, when the two medians leave one above their noise."""
    d = search_ms - embed_ms
    return f"≈ {d:.1f} ms derived" if d > 0 else "not measurable (derived ≤ 0: the embedding's noise is larger)"


def summary(meta: dict, results: dict, tjs: dict | None) -> list[str]:
    out = []
    cps = lambda p: p["done"]["added"] / p["done"]["seconds"]  # noqa: E731
    for quant, r in results.items():
        nat, page = r["native"], r["page"]
        parts = []
        if "wasm-st" in page:
            st = cps(page["wasm-st"])
            parts.append(f"wasm-st {st:.2f} chunks/s, {nat[1]['chunks_per_s'] / st:.1f}x "
                         f"the time of native 1 thread ({nat[1]['chunks_per_s']:.2f})")
        if "wasm-mt" in page:
            t = page["wasm-mt"]["engine"]["threads"]
            ref = nat.get(t, nat[1])
            mt = cps(page["wasm-mt"])
            parts.append(f"wasm-mt ({t} threads) {mt:.2f} chunks/s, {ref['chunks_per_s'] / mt:.1f}x "
                         f"the time of native {t} threads ({ref['chunks_per_s']:.2f})")
        out.append(f"- **{quant}, embedding in the page:** " + "; ".join(parts) + ".")
    if "Q8_0" in results and "F16" in results:
        q, f = results["Q8_0"], results["F16"]
        bits = [f"native 1 thread {q['native'][1]['chunks_per_s'] / f['native'][1]['chunks_per_s']:.2f}x"]
        for v in ("wasm-st", "wasm-mt"):
            if v in q["page"] and v in f["page"]:
                bits.append(f"{v} {cps(q['page'][v]) / cps(f['page'][v]):.2f}x")
        out.append("- **Q8_0 against F16** (Q8_0 chunks/s ÷ F16 chunks/s): " + ", ".join(bits) + ".")
    slow_mt = [q for q, r in results.items() if "wasm-mt" in r["page"] and "wasm-st" in r["page"]
               and cps(r["page"]["wasm-mt"]) < cps(r["page"]["wasm-st"])]
    if slow_mt:
        out.append(f"- **wasm-mt was slower than wasm-st** in this run ({', '.join(slow_mt)}). The machine has 2 cores "
                   "and other engineers' builds and tests ran on it (see the load columns): with 2 threads, a thread "
                   "that loses its core holds up the other at each of the engine's synchronisation points, so the "
                   "two-thread figures (native 2 threads too) say more about the load than about the engine. Rerun "
                   "on an idle machine before drawing a conclusion on threads.")
    for quant, r in results.items():
        s_ = r["native_search"]
        bits = [f"native {s_['search_ms']:.1f} ms (ranking {s_['rank_ms']:.1f} ms)"]
        for v, p in r["page"].items():
            bits.append(f"{v} {p['search_ms']:.1f} ms (ranking {derived(p['search_ms'], p['embed_ms'])})")
        out.append(f"- **A query over {meta['big_n']:,} chunks ({quant}), median:** " + "; ".join(bits) + ".")
        break  # one model is enough: ranking does not depend on it
    p = next(iter(next(iter(results.values()))["page"].values()))
    used = p["estimate"]["big"]["indexedDB"]
    used = None if used is None else used - (p["estimate"]["empty"]["indexedDB"] or 0)
    out.append(f"- **Kept index:** {p['big_record']['bytes'] / p['big_n']:,.0f} bytes per chunk in the IndexedDB "
               "record "
               f"({mb(p['big_record']['bytes'])} for {p['big_n']:,} chunks; {meta['dim'] * 4} of them are the vector); "
               + (f"Chromium reports {used / p['big_n']:,.0f} bytes per chunk of IndexedDB usage." if used is not None
                  else "Chromium gave no IndexedDB usage figure."))
    if tjs and tjs.get("summary"):
        out.append(tjs["summary"])
    elif tjs is not None and not tjs.get("rows"):
        out.append("- **transformers.js:** not run (see its section).")
    return out


def report(args, meta: dict, results: dict, tjs: dict | None) -> str:
    cmd = "python3 benchmarks/embed_speed.py" + (" --quick" if args.quick else "") + \
        (f" --quants {args.quants}" if args.quants != "Q8_0,F16" else "")
    lines = ["# Embedding speed, search latency and index size: the Search page against CPython", "",
             f"Generated by `{cmd}` (rerun it with that one command) on {meta['date']} UTC: headless Debian Chromium "
             f"{meta['chromium']}, {os.cpu_count()} CPU(s) {platform.machine()}, wasm builds of this commit, "
             "native build (`build/native`) of the same llama.cpp. One run; load average (1 min, this run's own "
             f"browsers and engines included) {meta['load_start']} at the start and {meta['load_end']} at the "
             "end, and before→after each measurement in the tables: a load well above 0 at a measurement's start "
             "means other work shared the 2 cores. The ratios within one run are the figures to read.", ""] + ([meta["note"], ""] if meta.get("note") else []) + [
             "## The chunks", "",
             f"{meta['n_chunks']} chunks ({meta['n_paragraphs']} paragraphs): the project's chunker (`chunk_text`, "
             f"1000 characters, 200 overlap: what the Search page's service does) over {len(meta['files'])} license "
             "texts that Debian ships in "
             f"`/usr/share/common-licenses` ({', '.join(meta['files'])}; {meta['corpus_bytes']:,} bytes, sha256 of "
             f"the files in this order `{meta['corpus_sha'][:16]}…`). Mean {meta['mean_chars']:.0f} characters and "
             f"**{meta['mean_tokens']:.1f} tokens per chunk** (MiniLM's tokenizer, with [CLS] and [SEP]; longest "
             f"{meta['max_tokens']}).", "",
             "## Summary (computed from the tables below)", ""] + summary(meta, results, tjs) + ["",
             "## 1. Embedding throughput (all-MiniLM-L6-v2)", "",
             "Native: `Embedder.embed` over the chunks' texts (after two warm-up chunks), through the ctypes backend. "
             "Page: the Search page in a fresh profile (service workers blocked, so the server's headers alone choose "
             "the engine: with COOP/COEP the page is cross-origin isolated and runs wasm-mt, without them wasm-st); "
             "the files are chosen in its file input and the run ends when `window.pocketmindSearch.state.adding` "
             "resolves (the index complete and kept in IndexedDB). *Embedding* is the service's own `seconds` "
             "(Python's clock in the worker, from the first chunk to the last); *end to end* is the wall time from "
             "choosing the files to the index kept (extraction, chunking, progress events, export, IndexedDB). "
             "Ratios are page time / native time with the same number of threads.", "",
             "| model | where | engine, threads | chunks/s (embedding) | chunks/s (end to end) | page / native time "
             "| load before→after |",
             "|---|---|---|---:|---:|---:|---|"]
    for quant, r in results.items():
        n = meta["n_chunks"]
        nat = r["native"]
        for threads in sorted(nat):
            x = nat[threads]
            lines.append(f"| {quant} | native (CPython) | native, {threads} | {x['chunks_per_s']:.2f} | "
                         f"{x['chunks_per_s']:.2f} | 1.00 | {x['load']} |")
        for variant, p in r["page"].items():
            threads = p["engine"]["threads"]
            emb = p["done"]["added"] / p["done"]["seconds"]
            e2e = p["done"]["added"] / p["wall_s"]
            ref = nat.get(threads) or nat[1]
            ratio = ref["chunks_per_s"] / emb
            lines.append(f"| {quant} | page | {p['engine']['variant']}, {threads} | {emb:.2f} | {e2e:.2f} | "
                         f"{ratio:.2f}x (vs native {threads}) | {p['load']} |")
            assert p["done"]["added"] == n, (p["done"], n)
    if tjs and tjs.get("rows"):
        for row in tjs["rows"]:
            lines.append(row)
    lines += ["", "Page boot (navigation to the embedding model loaded, nothing cached): " + "; ".join(
        f"{q} {v} {p['ready_s']:.1f} s" for q, r in results.items() for v, p in r["page"].items()) + ".", ""]
    if tjs is not None:
        lines += ["### transformers.js", ""] + tjs["text"] + [""]

    lines += ["## 2. Search latency over 10 000 chunks", "",
              f"An index of {meta['big_n']:,} chunks whose vectors are **random unit vectors** of dimension "
              f"{meta['dim']} (seed 0; the chunks' texts are the real chunks' texts repeated, so the stored size is "
              "realistic), made natively with `Index`, saved with `Index.to_bytes`, and given to the page's worker "
              "through the page's own `client.call('import_index', bytes)` (fetched from the test server). "
              f"{len(QUERIES)} fixed queries, {meta['rounds']} round(s), median in ms. "
              "*Search* is the service's whole `search` call (embed the query, rank, the hits as JSON); in the page it "
              "is timed in the page around `client.call`, so it includes the worker round trip. The page's worker "
              "exposes no call that ranks without embedding, so the ranking alone in the page is *derived*: "
              "median(search) − median(embed_json of the same query). Natively the same derivation is shown next to "
              "`Index.search` timed directly (numpy `vectors @ query` + `lexsort`), as a check of the derivation.", "",
              "| model | where | engine, threads | search (query embed + rank) ms | embed the query ms | rank ms | "
              "index import |",
              "|---|---|---|---:|---:|---:|---:|"]
    for quant, r in results.items():
        s = r["native_search"]
        lines.append(f"| {quant} | native (CPython, numpy {np.__version__}) | native, 1 | {s['search_ms']:.2f} | "
                     f"{s['embed_ms']:.2f} | {s['rank_ms']:.2f} measured; {derived(s['search_ms'], s['embed_ms'])} | "
                     f"{s['import_ms']:.0f} ms |")
        for variant, p in r["page"].items():
            lines.append(f"| {quant} | page (Pyodide) | {p['engine']['variant']}, {p['engine']['threads']} | "
                         f"{p['search_ms']:.2f} | {p['embed_ms']:.2f} | {derived(p['search_ms'], p['embed_ms'])} | "
                         f"{p['import_s'] * 1000:.0f} ms (fetch + copy + `import_index`) |")
    lines += ["", "## 3. Index size in the browser's storage", "",
              "The record the page keeps in IndexedDB (`pocketmind-search`) holds the service's `Index.to_bytes` "
              "(an .npz: float32 vectors + the chunks as JSON) and a few facts. *Record bytes* is the stored "
              "Uint8Array's length (read back with `search-store.js`'s `loadIndex`); *IndexedDB usage* is Chromium's "
              "`navigator.storage.estimate().usageDetails.indexedDB` after the save, against the empty profile (the "
              "10 000-chunk save replaces the real index's record). The vectors alone are dim × 4 = "
              f"{meta['dim'] * 4} bytes per chunk. Chromium compresses what it stores, so its usage can be below the "
              "record's length (the synthetic index repeats the real chunks' texts, which may compress better than "
              "10 000 different texts would; the real index's row shows the same effect).", "",
              "| model | engine | chunks | record bytes | per chunk | IndexedDB usage | per chunk |",
              "|---|---|---:|---:|---:|---:|---:|"]
    for quant, r in results.items():
        for variant, p in r["page"].items():
            base = p["estimate"]["empty"]["indexedDB"] or 0
            # the big record's own n_chunks field is stale (the page's info is not refreshed by a direct
            # import_index call), so its count is the import's
            for n, rec, est in ((p["record"]["n_chunks"], p["record"]["bytes"], p["estimate"]["kept"]),
                                (p["big_n"], p["big_record"]["bytes"], p["estimate"]["big"])):
                used = (est["indexedDB"] - base) if est["indexedDB"] is not None else None
                lines.append(f"| {quant} | {p['engine']['variant']} | {n:,} | {rec:,} ({mb(rec)}) | {rec / n:,.0f} B | "
                             + (f"{used:,} ({mb(used)}) | {used / n:,.0f} B |" if used is not None else "n/a | n/a |"))
    errors = [e for r in results.values() for p in r["page"].values() for e in p["errors"]]
    if errors:
        lines += ["", f"Page errors during the run: {errors}"]
    return "\n".join(lines) + "\n"


def _unjson(r: dict) -> dict:
    """JSON turned the native results' thread counts into strings."""
    return {**r, "native": {int(k): v for k, v in r["native"].items()}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help=f"two license texts ({', '.join(QUICK_CORPUS)}) "
                        "instead of eight, one query round, one model (the first of --quants)")
    parser.add_argument("--quants", default="Q8_0,F16", help="MiniLM weights to measure (default Q8_0,F16)")
    parser.add_argument("--index-chunks", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=2, help="rounds over the 20 queries (default 2)")
    parser.add_argument("--no-transformers-js", action="store_true", help="skip the transformers.js comparison")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "embedding_speed.md")
    parser.add_argument("--raw", type=Path, default=None,
                        help="also write every measurement as JSON here (default: not kept)")
    parser.add_argument("--render", type=Path, default=None, metavar="RAW",
                        help="only write the doc again from a --raw file (no measuring)")
    args = parser.parse_args()
    if args.render:
        raw = json.loads(args.render.read_text())
        args.quick, args.quants = raw["quick"], raw["quants"]
        text = report(args, raw["meta"], {q: _unjson(r) for q, r in raw["results"].items()}, raw["tjs"])
        print(text)
        args.out.write_text(text, encoding="utf-8")
        return 0
    from playwright.sync_api import sync_playwright

    quants = args.quants.split(",")[:1] if args.quick else args.quants.split(",")
    rounds = 1 if args.quick else args.rounds
    files = corpus(args.quick)
    chunks = chunks_of(files)
    texts = [c.text for c in chunks]
    wasm_build.build("native")
    models = {q: deps.minilm_gguf(q) for q in quants}
    chars = [len(t) for t in texts]
    n_paragraphs = sum(len(paragraphs(extract_text(name, data))) for name, data in files)
    first = next(iter(models.values()))
    m = Model.from_file(first)
    with Embedder(m) as e:
        ntok = [len(e.tokens(t)[0]) for t in texts]
        dim = e.dim
    m.close()
    meta = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M"),
            "files": [n for n, _ in files], "corpus_bytes": sum(len(d) for _, d in files),
            "corpus_sha": hashlib.sha256(b"".join(d for _, d in files)).hexdigest(), "n_chunks": len(chunks),
            "mean_chars": statistics.mean(chars), "n_paragraphs": n_paragraphs, "mean_tokens": statistics.mean(ntok),
            "max_tokens": max(ntok),
            "dim": dim, "big_n": args.index_chunks, "rounds": rounds, "load_start": load()}
    print(f"{len(chunks)} chunks, mean {meta['mean_tokens']:.1f} tokens; load {meta['load_start']}", flush=True)

    results = {}
    tjs = None

    def save_raw():  # after each step, so a run cut short can still be rendered (--render)
        if args.raw:
            meta["load_end"] = load()
            args.raw.write_text(json.dumps({"quick": args.quick, "quants": ",".join(results), "meta": meta,
                                            "results": results, "tjs": tjs}, indent=1))
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        meta["chromium"] = browser.version
        for quant, path in models.items():
            out = Path(tmp) / f"site-{quant}"
            build_site.build_site(out, [deps.smollm2()], embedders=[path])
            big = synthetic_index(file_sha256(path), path.name, chunks, args.index_chunks, dim).to_bytes()
            (out / "bench").mkdir()
            (out / "bench" / "index.npz").write_bytes(big)
            sites = {"wasm-st": serve(stack, out, headers=False), "wasm-mt": serve(stack, out, headers=True)}
            r = {"native": {}, "page": {}}
            for threads in (1, 2):
                r["native"][threads] = native_embed(path, texts, threads)
                print(f"{quant} native {threads} thread(s): {r['native'][threads]['chunks_per_s']:.2f} chunks/s",
                      flush=True)
            r["native_search"] = native_search(path, big, QUERIES, rounds)
            print(f"{quant} native search: {r['native_search']}", flush=True)
            for variant, url in sites.items():
                run = page_run(browser, url, files, QUERIES, rounds, url + "bench/index.npz")
                r["page"][run["engine"]["variant"]] = run
                print(f"{quant} page {run['engine']}: {run['done']['added'] / run['done']['seconds']:.2f} chunks/s "
                      f"embedding, {run['done']['added'] / run['wall_s']:.2f} end to end; "
                      f"search {run['search_ms']:.1f} ms, embed {run['embed_ms']:.1f} ms; "
                      f"record {run['record']}, {run['big_record']}; "
                      f"estimates {run['estimate']}", flush=True)
            results[quant] = r
            save_raw()
            if quant == quants[0] and not args.no_transformers_js:  # before the next model: its ratios use this one
                import transformers_js
                tjs = transformers_js.compare(browser, stack, Path(tmp), files, chunks, results)
                save_raw()
        browser.close()
    meta["load_end"] = load()
    save_raw()  # the final load
    text = report(args, meta, results, tjs)
    print(text)
    args.out.write_text(text, encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
