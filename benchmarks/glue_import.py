#!/usr/bin/env python3
"""Would shipping our glue as .pyc cut start-up? Times `import pocketmind.chat_service` in Pyodide (under Node)
from the wheel's .py files and from .pyc compiled by a host Python 3.12 (Pyodide 0.27.7 runs 3.12.7).

    python3 benchmarks/glue_import.py [--python3.12 PATH] [--rounds 3]
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "wasm"))

import build_site  # noqa: E402
import pyodide_dist  # noqa: E402

SCRIPT = """
import { loadPyodide } from "%(runtime)s/pyodide.mjs";
const py = await loadPyodide({ indexURL: "%(runtime)s/" });
await py.loadPackage(["numpy", "%(runtime)s/%(markupsafe)s", "%(runtime)s/%(jinja2)s"], { messageCallback: () => {} });
py.runPython("import numpy, jinja2, jinja2.sandbox");  // what the glue imports, loaded before the clock starts
py.FS.mkdirTree("/glue");
py.FS.mount(py.FS.filesystems.NODEFS, { root: process.argv[2] }, "/glue");
const t = performance.now();
py.runPython("import sys; sys.path.insert(0, '/glue'); import pocketmind.chat_service, pocketmind.pyodide_backend");
console.log((performance.now() - t).toFixed(1));
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    pyenv = Path.home() / ".pyenv/versions/3.12.1/bin/python"  # pyenv's shim fails where 3.12 is not selected
    parser.add_argument("--python3.12", dest="python312",
                        default=str(pyenv) if pyenv.exists() else shutil.which("python3.12") or "python3.12")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if not Path(args.python312).exists():
        print(f"no Python 3.12 at {args.python312}: the .pyc must match Pyodide's Python 3.12", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        runtime = pyodide_dist.assemble(tmp / "runtime")
        wheel = lambda prefix: next(n for n in runtime["files"] if n.startswith(prefix))  # noqa: E731
        for kind in ("py", "pyc"):
            with zipfile.ZipFile(build_site.glue_wheel()) as zf:
                zf.extractall(tmp / kind)
        subprocess.run([args.python312, "-m", "compileall", "-q", "-b", str(tmp / "pyc" / "pocketmind")], check=True)
        for source in (tmp / "pyc" / "pocketmind").glob("*.py"):
            source.unlink()  # sourceless: only the .pyc remain
        script = tmp / "import.mjs"
        script.write_text(SCRIPT % {"runtime": tmp / "runtime", "markupsafe": wheel("markupsafe-"),
                                    "jinja2": wheel("jinja2-")})
        times: dict[str, list[float]] = {"py": [], "pyc": []}
        for _ in range(args.rounds):
            for kind in times:
                shutil.rmtree(tmp / kind / "pocketmind" / "__pycache__", ignore_errors=True)
                out = subprocess.run(["node", str(script), str(tmp / kind)], capture_output=True, text=True, check=True)
                times[kind].append(float(out.stdout.strip().splitlines()[-1]))
    py, pyc = statistics.median(times["py"]), statistics.median(times["pyc"])
    print(f"import of the glue in Pyodide: .py {py:.1f} ms, .pyc {pyc:.1f} ms (median of {args.rounds}); "
          f".pyc saves {py - pyc:.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
