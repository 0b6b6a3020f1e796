"""A memory snapshot of the started Python, made at build time, so a returning visitor's worker restores it
instead of starting the interpreter and importing the standard library and jinja2 again.

    from pyodide_snapshot import snapshot
    path = snapshot(Path("site/pyodide"), [numpy_wheel, markupsafe_wheel, jinja2_wheel, glue_wheel])

runs pyodide_snapshot.mjs under Node (see there: what the glue's services import besides numpy and our own package,
imported into a Pyodide in snapshot mode, numpy left out because a snapshot cannot hold a dynamically loaded
library). The result is cached under a hash of everything it depends on: the runtime's files, the wheels, the script
and Node's version. A snapshot fixes Python's random seed and string hashes for everyone who restores it: the
workers reseed `random` after restoring (worker-common.js).
"""
from __future__ import annotations

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

SCRIPT = REPO / "pyodide_snapshot.mjs"
# What the workers import (worker-common.js bootPython's `module`), and the chat templates' sandbox.
SERVICES = ["pocketmind.chat_service", "pocketmind.task_service", "pocketmind.search_service", "jinja2.sandbox"]


def snapshot(runtime: Path, wheels: list[Path]) -> Path:
    """The snapshot for the Pyodide runtime laid out in `runtime` (pyodide_dist.assemble) with `wheels`, made once
    and cached: the path of the cached file (copy it, do not change it)."""
    manifest = runtime / "runtime.json"
    node = wasm_build.tool_version(["node", "--version"])
    key = wasm_build.digest(manifest, SCRIPT, *wheels, SERVICES, node)
    folder = deps.cache_root() / f"pyodide-snapshot-{key}"
    result = folder / "snapshot.bin"
    if result.is_file():
        return result
    with wasm_build.exclusive("pyodide-snapshot"):
        if result.is_file():
            return result
        with tempfile.TemporaryDirectory(dir=deps.cache_root()) as tmp:
            out = Path(tmp) / "snapshot.bin"
            proc = subprocess.run(["node", str(SCRIPT), str(runtime), str(out), ",".join(SERVICES),
                                   *map(str, wheels)], capture_output=True, text=True)
            if proc.returncode != 0 or not out.is_file():
                # Pyodide prints its whole minified source with a stack trace: the last lines say what failed
                raise RuntimeError(f"the Pyodide snapshot failed: {proc.stderr[-3000:]}")
            info = json.loads(proc.stdout.strip().splitlines()[-1])
            (Path(tmp) / "snapshot.json").write_text(json.dumps(info, indent=2) + "\n")
            wasm_build.prune("pyodide-snapshot", folder)
            shutil.rmtree(folder, ignore_errors=True)
            Path(tmp).rename(folder)
            Path(tmp).mkdir()  # for TemporaryDirectory's clean-up
    return result
