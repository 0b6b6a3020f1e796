"""What the builder writes for offline use and installation: sw.js's precache list and build id, the web manifest
and its generated icons, and the header-less server option."""
from __future__ import annotations

import hashlib
import json
import re
import struct
import threading
import urllib.request
import zlib
from pathlib import Path

import pytest

import build_site


@pytest.fixture(scope="module")
def site(tmp_path_factory, tiny_models):
    out = tmp_path_factory.mktemp("pwa-dist")
    build_site.build_site(out, [tiny_models["F16"]])
    return out


def sw_constants(out: Path) -> dict:
    """BUILD, CACHE, PREFIX, PRECACHE and PAGES as sw.js declares them (each a JSON literal on one line)."""
    text = (out / "sw.js").read_text()
    found = dict(re.findall(r"^const (BUILD|CACHE|PREFIX|PRECACHE|PAGES) = (.*?);(?: //.*)?$", text, re.M))
    return {name: json.loads(value) for name, value in found.items()}


def test_sw_precaches_every_file_but_the_models_under_a_content_hash(site):
    sw = sw_constants(site)
    listed = {path: (sha, size) for path, sha, size in sw["PRECACHE"]}
    on_disk = {p.relative_to(site).as_posix() for p in site.rglob("*") if p.is_file()}
    assert set(listed) == on_disk - {"sw.js"} - {p for p in on_disk if p.startswith("models/")}
    for path, (sha, size) in listed.items():
        data = (site / path).read_bytes()
        assert hashlib.sha256(data).hexdigest() == sha and len(data) == size, path
    for needed in ("index.html", "engine-check.html", "offline.js", "manifest.webmanifest", "icons/icon-512.png",
                   "pyodide/pyodide.asm.wasm", "wasm/pocketmind-mt.wasm", "wasm/pocketmind-st.wasm"):
        assert needed in listed, needed
    assert any(p.startswith("wheels/pocketmind-") for p in listed)
    expected = hashlib.sha256("".join(f"{p}\t{listed[p][0]}\n" for p in sorted(listed)).encode()).hexdigest()[:16]
    assert sw["BUILD"] == expected and sw["CACHE"] == sw["PREFIX"] + expected
    # old builds are found by this prefix; model-store's caches must never match it
    store = (Path(build_site.__file__).parent / "site" / "model-store.js").read_text()
    for name in ("pocketmind-models-v1", "pocketmind-model-blocks-v1"):
        assert f'"{name}"' in store and not name.startswith(sw["PREFIX"])
    text = (site / "sw.js").read_text()
    for header in ("Cross-Origin-Opener-Policy", "Cross-Origin-Embedder-Policy", "Cross-Origin-Resource-Policy",
                   "Content-Security-Policy"):
        assert header in text


def test_one_changed_file_gives_a_new_build_and_the_same_inputs_the_same(tmp_path, tiny_models):
    a = build_site.build_site(tmp_path / "a", [tiny_models["F16"]])
    b = build_site.build_site(tmp_path / "b", [tiny_models["F16"]])
    c = build_site.build_site(tmp_path / "c", [tiny_models["F16"]], extra_css="body { color: red; }")
    sa, sb, sc = (sw_constants(x) for x in (a, b, c))
    assert sa["BUILD"] == sb["BUILD"] and (a / "sw.js").read_bytes() == (b / "sw.js").read_bytes()
    assert sc["BUILD"] != sa["BUILD"]
    changed = {p for p, sha, _ in sc["PRECACHE"]} ^ {p for p, sha, _ in sa["PRECACHE"]}
    differing = {p for (p, s1, _), (_, s2, _) in zip(sa["PRECACHE"], sc["PRECACHE"]) if s1 != s2}
    # the pages carry the stylesheet's integrity hash, so they change with it
    assert not changed and differing == {"style.css", *build_site.PAGES}


def png_size_and_pixels(data: bytes) -> tuple[int, int, bytes]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks = 8, {}
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        assert struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])[0] == zlib.crc32(kind + body)
        chunks.setdefault(kind, b"")
        chunks[kind] += body
        pos += 12 + length
    width, height, depth, color = struct.unpack(">IIBB", chunks[b"IHDR"][:10])
    assert (depth, color) == (8, 6) and b"IEND" in chunks
    return width, height, zlib.decompress(chunks[b"IDAT"])


def test_manifest_and_generated_icons(site):
    manifest = json.loads((site / "manifest.webmanifest").read_text())
    assert manifest["start_url"] == "./" and manifest["display"] == "standalone"
    assert manifest["name"] and manifest["short_name"] and manifest["theme_color"] and manifest["background_color"]
    sizes = {icon["sizes"] for icon in manifest["icons"]}
    assert {"192x192", "512x512"} <= sizes
    for icon in manifest["icons"]:
        width, height, raw = png_size_and_pixels((site / icon["src"]).read_bytes())
        assert f"{width}x{height}" == icon["sizes"] and len(raw) == height * (1 + 4 * width)
        rows = [raw[y * (1 + 4 * width) + 1:(y + 1) * (1 + 4 * width)] for y in range(height)]
        corner, bubble = rows[0][:4], rows[height * 35 // 100][4 * (width // 2):4 * (width // 2) + 4]
        assert corner != bubble and bubble == b"\xff\xff\xff\xff"  # a white mark on the background
    for page in ("index.html", "engine-check.html"):
        html = (site / page).read_text()
        assert '<link rel="manifest" href="manifest.webmanifest">' in html and "icons/icon-192.png" in html
        assert '<meta name="theme-color"' in html


def test_server_without_isolation_headers(site):
    server = build_site.make_server(site, headers=False)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}/"
    try:
        with urllib.request.urlopen(base) as r:
            assert r.headers["Cross-Origin-Opener-Policy"] is None
            assert r.headers["Cross-Origin-Embedder-Policy"] is None
        with urllib.request.urlopen(base + "manifest.webmanifest") as r:
            assert r.headers["Content-Type"] == "application/manifest+json"
        with urllib.request.urlopen(base + "sw.js") as r:
            assert r.headers["Content-Type"] == "text/javascript"
    finally:
        server.shutdown()
        server.server_close()
