"""The native build's fuzzing corpus through the single-thread wasm module under Node: every mutated file gives a
clean error or a successful load and decode, never an abort, a crash of Node, or a hang. All files run in one
module instance (one Node process), which also shows that nothing a failed load leaves behind breaks the next."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from gguf_mutations import write_corpus

REPO = Path(__file__).resolve().parents[1]
TIMEOUT_S = 300


def test_fuzzed_models_never_abort_or_hang_in_wasm(built, tiny_models, tmp_path):
    files = write_corpus(tmp_path / "mutants", tiny_models["Q8_0"], tiny_models["F16"])
    job = tmp_path / "job.json"
    job.write_text(json.dumps({"module": str(built("wasm-st") / "pocketmind-st.js"), "log_level": 0,
                               "progress": True, "tasks": [{"op": "try", "model": str(f)} for f in files]}))
    cmd = ["node", "--no-experimental-fetch", str(REPO / "wasm" / "run_node.cjs"), str(job)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT_S)
        stdout, stderr, code = proc.stdout, proc.stderr, proc.returncode
    except subprocess.TimeoutExpired as e:
        stdout, stderr, code = (e.stdout or b"").decode(errors="replace"), "", "timeout"
    lines = [json.loads(line) for line in stdout.splitlines() if line.startswith(("{", "["))]
    started = [x["started"] for x in lines if isinstance(x, dict) and "started" in x]
    last = files[started[-1]].name if started else "(before the first file)"
    final = lines[-1] if lines else None
    if code == "timeout":
        pytest.fail(f"wasm fuzzing hung (> {TIMEOUT_S} s) on {last}")
    assert code == 0 and isinstance(final, list), (
        f"the wasm module failed (exit {code}) on {last}: {final}\n{stderr[-3000:]}")

    results = [r["result"] for r in final[1:]]
    assert len(results) == len(files) >= 200
    errors = [r for r in results if r.startswith(("load-error", "run-error"))]
    assert all(r == "ran" or r in errors for r in results)
    assert all(len(r) > 30 for r in errors), [r for r in errors if len(r) <= 30]
    assert len(errors) > len(files) // 2
    assert any(r == "ran" for r in results)

    # and the same outcome as the native build, file by file (the mutants stay far below 32-bit limits)
    lib = built("native") / "libpocketmind.so"
    native = subprocess.run([sys.executable, str(REPO / "tests" / "fuzz_load.py"), str(lib), str(tmp_path / "mutants")],
                            capture_output=True, text=True, timeout=TIMEOUT_S)
    native_results = {x["file"]: x["result"] for x in map(json.loads, native.stdout.splitlines()) if "result" in x}
    kind = {f.name: r.split(":")[0] for f, r in zip(files, results)}
    assert kind == {name: r.split(":")[0] for name, r in native_results.items()}
