"""The Pyodide runtime assembly: the right files, each verified (pins, the official lock), cached, and a pure
markupsafe wheel that works without its C speedups."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

import pyodide_dist
from deps import HashMismatch, sha256_file

EXPECTED = {
    "pyodide.js", "pyodide.mjs", "pyodide.asm.js", "pyodide.asm.wasm", "python_stdlib.zip", "pyodide-lock.json",
    "numpy-2.0.2-cp312-cp312-pyodide_2024_0_wasm32.whl", "micropip-0.9.0-py3-none-any.whl",
    "packaging-24.2-py3-none-any.whl", "jinja2-3.1.6-py3-none-any.whl", "markupsafe-3.0.3-py3-none-any.whl",
}


@pytest.fixture(scope="module")
def runtime(tmp_path_factory) -> tuple[Path, dict]:
    dest = tmp_path_factory.mktemp("runtime") / "pyodide"
    return dest, pyodide_dist.assemble(dest)


def test_assemble_lays_out_exactly_the_runtime_with_the_manifest_hashes(runtime):
    dest, manifest = runtime
    assert {p.name for p in dest.iterdir()} == EXPECTED | {"runtime.json"}
    assert set(manifest["files"]) == EXPECTED
    for name, meta in manifest["files"].items():
        assert sha256_file(dest / name) == meta["sha256"], name
        assert (dest / name).stat().st_size == meta["size"], name
    assert json.loads((dest / "runtime.json").read_text()) == manifest
    assert manifest["pyodide"] == "0.27.7" and manifest["python"] == "3.12.7"


def test_lock_wheels_equal_the_official_lock_entries(runtime):
    dest, manifest = runtime
    lock = json.loads((dest / "pyodide-lock.json").read_text())
    assert lock["info"]["version"] == "0.27.7"
    for pkg in ("numpy", "micropip", "packaging"):
        entry = lock["packages"][pkg]
        meta = manifest["files"][entry["file_name"]]
        assert meta["lock_entry"] == pkg
        assert meta["sha256"] == entry["sha256"] == sha256_file(dest / entry["file_name"])
    assert lock["packages"]["numpy"]["sha256"] == "ebb61241d962b98b21597d7ce43b67668a6d5bab3acec4fbe958657320d7cd08"


def test_a_wheel_that_differs_from_the_lock_is_refused():
    entry = {"name": "numpy", "version": "2.0.2", "sha256": "0" * 64}
    with pytest.raises(HashMismatch) as err:
        pyodide_dist.check_lock_wheel("numpy-2.0.2-cp312-cp312-pyodide_2024_0_wasm32.whl", b"not numpy", entry)
    message = str(err.value)
    assert "numpy-2.0.2-cp312-cp312-pyodide_2024_0_wasm32.whl" in message and "0" * 64 in message
    assert __import__("hashlib").sha256(b"not numpy").hexdigest() in message


@pytest.fixture
def own_cache(tmp_path, monkeypatch, runtime) -> Path:
    """A private cache holding links to the real (already verified) downloads, so corrupting it harms nothing."""
    real = pyodide_dist.cache_root() / "downloads"
    cache = tmp_path / "cache"
    (cache / "downloads").mkdir(parents=True)
    for f in real.iterdir():
        if f.is_file():
            os.link(f, cache / "downloads" / f.name)
    monkeypatch.setenv("POCKETMIND_CACHE", str(cache))
    return cache


def corrupt(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.unlink()  # break the hard link first: the shared download stays intact
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("pin", [pyodide_dist.PYODIDE_NPM, pyodide_dist.JINJA2_WHEEL, pyodide_dist.MARKUPSAFE_SDIST],
                         ids=lambda p: p.filename)
def test_a_corrupted_download_is_detected_and_not_used(own_cache, tmp_path, pin):
    cached = own_cache / "downloads" / pin.filename
    corrupt(cached)
    bad = sha256_file(cached)
    dest = tmp_path / "out"
    with pytest.raises(HashMismatch) as err:
        pyodide_dist.assemble(dest)
    message = str(err.value)
    assert pin.filename in message and bad in message and pin.sha256 in message
    assert not cached.exists()  # removed, so the next run fetches it again
    assert not dest.exists() or not any(dest.iterdir())
    assert not list(own_cache.glob("pyodide-runtime-*"))  # nothing half-built was cached
    manifest = pyodide_dist.assemble(dest)  # re-fetched from the registry, verified, used
    assert sha256_file(cached) == pin.sha256
    assert set(manifest["files"]) == EXPECTED


def test_a_damaged_cache_entry_is_detected_and_rebuilt(own_cache, tmp_path):
    pyodide_dist.assemble(tmp_path / "a")
    (entry,) = own_cache.glob("pyodide-runtime-*")
    corrupt(entry / "numpy-2.0.2-cp312-cp312-pyodide_2024_0_wasm32.whl")
    with pytest.raises(HashMismatch, match="sha256"):
        pyodide_dist.assemble(tmp_path / "b")
    manifest = pyodide_dist.assemble(tmp_path / "b")
    numpy = tmp_path / "b" / "numpy-2.0.2-cp312-cp312-pyodide_2024_0_wasm32.whl"
    assert sha256_file(numpy) == manifest["files"][numpy.name]["sha256"] == \
        "ebb61241d962b98b21597d7ce43b67668a6d5bab3acec4fbe958657320d7cd08"


def test_markupsafe_wheel_is_pure_and_imports_without_speedups(runtime, tmp_path):
    dest, _ = runtime
    wheel = dest / "markupsafe-3.0.3-py3-none-any.whl"
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        assert zf.testzip() is None
        assert "Tag: py3-none-any" in zf.read("markupsafe-3.0.3.dist-info/WHEEL").decode()
        assert "Name: MarkupSafe" in zf.read("markupsafe-3.0.3.dist-info/METADATA").decode()
        zf.extractall(tmp_path / "site")
    assert not [n for n in names if "_speedups" in n or n.endswith((".so", ".pyd", ".c"))], names
    code = ("import markupsafe, sys\n"
            "assert markupsafe.__file__.startswith(sys.argv[1]), markupsafe.__file__\n"
            "assert markupsafe._escape_inner.__module__ == 'markupsafe._native'\n"
            "try:\n    import markupsafe._speedups\nexcept ImportError:\n    pass\n"
            "else:\n    raise SystemExit('speedups importable')\n"
            "print(markupsafe.escape('<a href=\"x\">&</a>'))\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "site")}
    out = subprocess.run([sys.executable, "-s", "-c", code, str(tmp_path / "site")], env=env, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "&lt;a href=&#34;x&#34;&gt;&amp;&lt;/a&gt;"


def test_markupsafe_wheel_is_deterministic(tmp_path):
    sdist = pyodide_dist.fetch(pyodide_dist.MARKUPSAFE_SDIST)
    (tmp_path / "1").mkdir(), (tmp_path / "2").mkdir()
    a = pyodide_dist.build_markupsafe_wheel(sdist, tmp_path / "1")
    b = pyodide_dist.build_markupsafe_wheel(sdist, tmp_path / "2")
    assert a.name == "markupsafe-3.0.3-py3-none-any.whl"
    assert a.read_bytes() == b.read_bytes()


def test_second_assemble_is_fast(runtime, tmp_path):
    start = time.perf_counter()
    manifest = pyodide_dist.assemble(tmp_path / "again")
    elapsed = time.perf_counter() - start
    assert manifest == runtime[1]
    assert elapsed < 3, f"cached assemble took {elapsed:.2f} s"
    shutil.rmtree(tmp_path / "again")
