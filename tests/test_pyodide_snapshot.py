"""The build-time snapshot of the started Python: what it holds (the standard library's and jinja2's modules our
services import, never numpy or our glue, which a snapshot cannot or must not hold), and that it is made once per
set of inputs. Restoring it in the page is tested in test_browser_offline.py."""
from __future__ import annotations

import json
import struct

import pytest

import build_site
import pyodide_dist
import pyodide_snapshot


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    runtime = tmp_path_factory.mktemp("runtime") / "pyodide"
    manifest = pyodide_dist.assemble(runtime)
    wheels = [runtime / name for prefix in build_site.RUNTIME_WHEELS for name in manifest["files"]
              if name.startswith(prefix)] + [build_site.glue_wheel()]
    return runtime, wheels, pyodide_snapshot.snapshot(runtime, wheels)


def test_the_snapshot_holds_the_pure_modules_the_services_import_and_not_numpy(made):
    _, _, path = made
    info = json.loads((path.parent / "snapshot.json").read_text())
    modules = set(info["modules"])
    assert {"jinja2", "jinja2.sandbox", "markupsafe", "json", "dataclasses"} <= modules, sorted(modules)
    assert not [m for m in modules if m.split(".")[0] in ("numpy", "pocketmind")], sorted(modules)
    data = path.read_bytes()
    assert info["bytes"] == len(data)
    # Pyodide's snapshot header: its magic number, then where the heap starts; the heap is 64 KiB pages
    magic, heap_at = struct.unpack_from("<II", data)
    assert magic == 1886286592  # Pyodide 0.27.7's snapshot magic number
    assert (len(data) - heap_at) % 65536 == 0


def test_the_snapshot_is_made_once_per_set_of_inputs(made):
    runtime, wheels, path = made
    before = path.stat().st_mtime_ns
    assert pyodide_snapshot.snapshot(runtime, wheels) == path
    assert path.stat().st_mtime_ns == before  # the cached file, not a new run
