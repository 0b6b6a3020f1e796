"""Build our C API over llama.cpp: a native shared library (for CPython/ctypes) and WebAssembly modules.

    python wasm/build.py [native] [wasm-st] [wasm-mt] [wasm-st-relaxed] [wasm-mt-relaxed] [native-generic]
                                                                     (no argument: all but native-generic)

Two stages per variant, each cached by a hash of everything that goes into it:
  1. llama.cpp's static libraries (llama, ggml, ggml-base, ggml-cpu) from the pinned, patched source;
  2. our binding (wasm/pocketmind.cpp) compiled and linked against them.
A relaxed-SIMD variant reuses its plain variant's libraries with one kernel file compiled again (see RELAXED).
Outputs are copied to build/<variant>/ in the work tree; the cache lives in ~/.cache/pocketmind (or
$POCKETMIND_CACHE), so a second run, or a fresh clone on the same machine, costs seconds.
"""
from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import importlib.util
import json
import os
import shlex
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import deps  # noqa: E402

REPO = HERE.parent
OUT = REPO / "build"
PATCHES = sorted((HERE / "patches").glob("*.patch"))  # to llama.cpp
UNWIND_PATCH = HERE / "patches" / "emscripten" / "unwind-wasm-lpad-context-not-tls.patch"
BINDING = [HERE / "pocketmind.cpp", HERE / "pocketmind.h"]
LLAMA_LIBS = ["src/libllama.a", "ggml/src/libggml.a", "ggml/src/libggml-cpu.a", "ggml/src/libggml-base.a"]

# Threads the multi-thread module can run at once: pthread workers are started with the module, because a
# thread created later needs the creating thread's event loop, which is busy running the model.
WASM_MAX_THREADS = 8

COMMON_CMAKE = [
    "-G", "Ninja",
    "-DCMAKE_BUILD_TYPE=Release",
    "-DBUILD_SHARED_LIBS=OFF",
    "-DGGML_OPENMP=OFF",
    "-DLLAMA_CURL=OFF",
    "-DLLAMA_OPENSSL=OFF",
    "-DLLAMA_BUILD_COMMON=OFF",
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_TOOLS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF",
    "-DLLAMA_BUILD_SERVER=OFF",
    "-DLLAMA_BUILD_HTML=OFF",
    "-DGGML_BUILD_TESTS=OFF",
    "-DGGML_BUILD_EXAMPLES=OFF",
]

WASM_CFLAGS = ["-O3", "-msimd128", "-fwasm-exceptions"]

# ggml's x86 instruction-set options, all turned off for native-generic.
X86_SIMD_OFF = [f"-DGGML_{flag}=OFF" for flag in (
    "SSE42", "AVX", "AVX_VNNI", "AVX2", "BMI2", "AVX512", "AVX512_VBMI", "AVX512_VNNI", "AVX512_BF16", "FMA", "F16C",
    "AMX_TILE", "AMX_INT8", "AMX_BF16")]

VARIANTS = {
    "native": {
        "cmake": ["-DGGML_NATIVE=ON", "-DCMAKE_POSITION_INDEPENDENT_CODE=ON"],
        "cflags": [],
    },
    "wasm-st": {
        "cmake": ["-DEMSCRIPTEN_SYSTEM_PROCESSOR=wasm32", "-DLLAMA_WASM_MEM64=OFF", "-DGGML_NATIVE=OFF"],
        "cflags": WASM_CFLAGS,
    },
    "wasm-mt": {
        "cmake": ["-DEMSCRIPTEN_SYSTEM_PROCESSOR=wasm32", "-DLLAMA_WASM_MEM64=OFF", "-DGGML_NATIVE=OFF"],
        "cflags": WASM_CFLAGS + ["-pthread"],
    },
    # The C API over ggml's generic C kernels, a reference for the wasm builds' parity (tests/test_quant_parity.py):
    # no x86 instruction-set option, no llamafile sgemm (x86 SIMD only), and __SSE2__ (which x86-64 always has)
    # undefined, because ggml's vec.h/vec.cpp would otherwise take 4-wide SSE2 paths for expf, silu and softmax.
    # Then the x86 quants.c falls back to the *_generic kernels, no GGML_SIMD mapping applies (it needs __SSE3__
    # or more) and every loop is scalar C. Not built by .ci/setup.sh; built on first use (about as long as native).
    "native-generic": {
        "cmake": ["-DGGML_NATIVE=OFF", "-DCMAKE_POSITION_INDEPENDENT_CODE=ON", "-DGGML_LLAMAFILE=OFF", *X86_SIMD_OFF],
        "cflags": ["-U__SSE2__"],
    },
}

# Relaxed-SIMD modules: a wasm build again, with its kernel file (ggml-cpu/arch/wasm/quants.c) compiled by Debian's
# clang-19 with -mrelaxed-simd for the 8-bit dot product (i16x8.relaxed_dot_i8x16_i7x16_s; pmaddubsw on x86),
# which Emscripten 3.1.6's clang 14 cannot emit. The patches use it, under __wasm_relaxed_simd__, only where it gives
# the plain build's bits (wasm-simd-relaxed-dot.patch). The rest is the plain variant's libraries: the object,
# linked before them, takes the place of the archive's copy. A browser without relaxed SIMD (Safari, say) rejects
# such a module, so the page picks it by a feature test (site/engine-boot.js); Node 20 runs it behind a flag.
RELAXED = {"wasm-st-relaxed": "wasm-st", "wasm-mt-relaxed": "wasm-mt"}
RELAXED_CLANG = "clang-19"
RELAXED_SOURCE = "ggml/src/ggml-cpu/arch/wasm/quants.c"
# Node 20's V8 has relaxed SIMD behind this flag (Chromium ships it); harmless for the other modules
NODE_RELAXED_FLAG = "--experimental-wasm-relaxed-simd"

DEFAULT_VARIANTS = ["native", "wasm-st", "wasm-mt", *RELAXED]
ALL_VARIANTS = [*VARIANTS, *RELAXED]


def plain(variant: str) -> str:
    """The variant whose libraries a variant links: itself, or a relaxed variant's plain one."""
    return RELAXED.get(variant, variant)


def module_name(variant: str) -> str:
    """A wasm variant's file stem: pocketmind-st, pocketmind-mt-relaxed, ..."""
    return "pocketmind-" + variant.removeprefix("wasm-")


def capi_signatures() -> dict[str, tuple[str, str]]:
    """The C API's function table, read from py/pocketmind/capi.py by path: the one list the header, the
    exports and both Python backends follow (importing the pocketmind package would pull in numpy)."""
    spec = importlib.util.spec_from_file_location("pocketmind_capi", REPO / "py" / "pocketmind" / "capi.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.SIGNATURES


# What the wasm modules export: every C API function (Python calls them all through Pyodide) and the runtime
# helpers code outside the module uses: UTF8ToString, and FS (the module's in-memory file system, where the C API
# reads and writes paths: fine-tuning's F32 and output files; the glue also uses it for pm_js_map_buffer).
EXPORTS = list(capi_signatures())
RUNTIME_METHODS = ["UTF8ToString", "FS"]


def log(msg: str) -> None:
    print(f"[build] {msg}", flush=True)


def digest(*parts: object) -> str:
    h = hashlib.sha256()
    for part in parts:
        if isinstance(part, Path):
            h.update(part.name.encode())
            h.update(part.read_bytes())
        else:
            h.update(json.dumps(part, sort_keys=True).encode())
        h.update(b"\0")
    return h.hexdigest()[:16]


def tool_version(cmd: list[str]) -> str:
    return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.splitlines()[0]


def emscripten_env() -> dict[str, str]:
    env = dict(os.environ)
    # Debian's emcc needs its node modules (acorn) on NODE_PATH.
    env.setdefault("NODE_PATH", "/usr/share/nodejs")
    return env


def prune(prefix: str, keep: Path) -> None:
    """Drop cache entries of the same kind that an input change has made stale: `prefix`-KEY, not another kind's
    longer prefix (out-wasm-st-KEY, not out-wasm-st-relaxed-KEY)."""
    for old in deps.cache_root().glob(f"{prefix}-*"):
        if old != keep and old.is_dir() and "-" not in old.name[len(prefix) + 1:]:
            shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def exclusive(name: str):
    """Hold a lock file in the cache: two processes building the same thing (a test run and a setup, two checkouts)
    would otherwise wipe each other's half-built folder. The second waits, then finds the first's result."""
    with open(deps.cache_root() / f"{name}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def source_tree() -> Path:
    """The pinned llama.cpp tree with our patches applied, extracted once per (sdist, patches) hash."""
    with exclusive("source"):
        return _source_tree()


def source_key() -> str:
    """What the patched source depends on: the sdist and our patches (a libraries' cache key includes it)."""
    return digest(deps.LLAMA_CPP_SDIST.sha256, *PATCHES)


def _source_tree() -> Path:
    sdist = deps.fetch(deps.LLAMA_CPP_SDIST)
    root = deps.cache_root() / f"src-{source_key()}"
    tree = root / deps.LLAMA_CPP_SUBDIR
    if (root / ".ok").exists():
        return tree
    shutil.rmtree(root, ignore_errors=True)
    log(f"extracting {sdist.name}")
    with tarfile.open(sdist) as tar:
        # the sdist's vendor/llama.cpp/.git points at a submodule that is not there: leave it out
        members = [m for m in tar.getmembers()
                   if m.name.startswith(deps.LLAMA_CPP_SUBDIR + "/") and m.name != deps.LLAMA_CPP_SUBDIR + "/.git"]
        tar.extractall(root, members=members, filter="data")
    for patch in PATCHES:
        log(f"applying {patch.name}")
        subprocess.run(["patch", "-p1", "--forward", "--batch", "-i", str(patch)], cwd=tree, check=True)
    (root / ".ok").touch()
    return tree


def libs_dir(variant: str) -> Path:
    """Where a variant's llama.cpp libraries are cached: by the patched source, the build options and compiler."""
    spec = VARIANTS[variant]
    compiler = tool_version(["emcc", "--version"] if variant.startswith("wasm") else ["gcc", "--version"])
    return deps.cache_root() / f"libs-{variant}-{digest(source_key(), spec, COMMON_CMAKE, compiler)}"


def build_libs(variant: str, tree: Path) -> Path:
    spec = VARIANTS[variant]
    wasm = variant.startswith("wasm")
    bdir = libs_dir(variant)
    if (bdir / ".ok").exists():
        return bdir
    shutil.rmtree(bdir, ignore_errors=True)
    flags = " ".join(spec["cflags"])
    cmake = ["cmake", "-S", str(tree), "-B", str(bdir), *COMMON_CMAKE, *spec["cmake"],
             f"-DCMAKE_C_FLAGS={flags}", f"-DCMAKE_CXX_FLAGS={flags}"]
    env = emscripten_env() if wasm else dict(os.environ)
    if wasm:
        cmake = ["emcmake", *cmake]
    t0 = time.time()
    log(f"{variant}: configuring llama.cpp")
    subprocess.run(cmake, check=True, env=env, stdout=subprocess.DEVNULL)
    log(f"{variant}: compiling llama.cpp libraries")
    subprocess.run(["cmake", "--build", str(bdir), "--target", "llama", "-j", str(os.cpu_count() or 2)],
                   check=True, env=env, stdout=subprocess.DEVNULL)
    (bdir / ".ok").write_text(f"{time.time() - t0:.0f}\n")
    prune(f"libs-{variant}", bdir)
    log(f"{variant}: libraries built in {time.time() - t0:.0f} s")
    return bdir


def portable(args: list[str]) -> list[str]:
    """A command line for a cache key: where this checkout lies does not matter (CI builds in a fresh clone)."""
    return [arg.replace(str(REPO), "<repo>") for arg in args]


def max_threads(variant: str) -> int:
    return {"native": 64, "native-generic": 64, "wasm-st": 1, "wasm-mt": WASM_MAX_THREADS}[plain(variant)]


def relaxed_kernels(variant: str, libs: Path) -> Path:
    """RELAXED_SOURCE compiled by clang-19 with -mrelaxed-simd and the flags CMake gave emcc for it in `libs`, the
    plain `variant`'s libraries (compile_commands.json), plus the ones emcc adds itself (its target, sysroot and
    defines: emcc --cflags)."""
    entry = next(e for e in json.loads((libs / "compile_commands.json").read_text())
                 if e["file"].endswith(RELAXED_SOURCE))
    args = shlex.split(entry["command"])[1:]
    for flag in ("-o", "-c"):  # the output and the source, given below
        at = args.index(flag)
        del args[at:at + 2]
    source = Path(entry["file"])
    cmd = relaxed_command(args, source)
    key = digest(libs.name, source, cmd, tool_version([RELAXED_CLANG, "--version"]))
    work = deps.cache_root() / f"relaxed-{variant}-{key}"
    obj = work / "quants-relaxed.o"
    if obj.exists():
        return obj
    prune(f"relaxed-{variant}", work)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    subprocess.run([*cmd, "-o", str(obj.with_suffix(".partial"))], check=True, cwd=entry["directory"])
    os.replace(obj.with_suffix(".partial"), obj)
    return obj


def relaxed_command(args: list[str], source: Path) -> list[str]:
    """clang-19 compiling `source` to a wasm object with relaxed SIMD, with emcc's own flags (its target, sysroot
    and defines: emcc --cflags) before `args`; the caller adds -o."""
    emcc_flags = shlex.split(subprocess.run(["emcc", "--cflags"], capture_output=True, text=True, check=True,
                                            env=emscripten_env()).stdout)
    return [RELAXED_CLANG, *emcc_flags, *args, "-mrelaxed-simd", "-c", str(source)]


def emscripten_root() -> Path:
    return Path(subprocess.run(["em-config", "EMSCRIPTEN_ROOT"], capture_output=True, text=True, check=True,
                               env=emscripten_env()).stdout.strip())


def unwind_fix(flags: list[str]) -> Path:
    """Emscripten's wasm-EH landing-pad glue rebuilt from the toolchain's own source with our patch.

    Debian's emscripten 3.1.6 pairs LLVM 14, which addresses __wasm_lpad_context as a plain global, with a
    libunwind that declares it thread_local: in a pthread build no C++ catch clause matches, so every error
    llama.cpp throws (a bad model file, say) escapes its handlers. Linked before the system library, this
    object replaces Unwind-wasm.o. (A plain global is shared by threads; only the calling thread throws.)
    """
    source = emscripten_root() / "system" / "lib" / "libunwind"
    key = digest(UNWIND_PATCH, source / "src" / "Unwind-wasm.c", flags, tool_version(["emcc", "--version"]))
    work = deps.cache_root() / f"unwind-{key}"
    obj = work / "Unwind-wasm.o"
    if obj.exists():
        return obj
    shutil.rmtree(work, ignore_errors=True)
    (work / "src").mkdir(parents=True)
    shutil.copy2(source / "src" / "Unwind-wasm.c", work / "src" / "Unwind-wasm.c")
    subprocess.run(["patch", "-p1", "--batch", "-i", str(UNWIND_PATCH)], cwd=work, check=True, stdout=subprocess.DEVNULL)
    subprocess.run(["emcc", "-c", *flags, "-DNDEBUG", "-D_LIBUNWIND_DISABLE_VISIBILITY_ANNOTATIONS",
                    "-D__USING_WASM_EXCEPTIONS__", f"-I{source / 'include'}", f"-I{source / 'src'}",
                    str(work / "src" / "Unwind-wasm.c"), "-o", str(obj)], check=True, env=emscripten_env())
    return obj


def link_command(variant: str, tree: Path, libs: Path) -> tuple[list[str], list[str]]:
    """The compiler command (without its -o) that compiles the binding against the libraries, and the names of
    the files it writes (the first is the one -o names)."""
    spec = VARIANTS[plain(variant)]
    wasm = variant.startswith("wasm")
    includes = [f"-I{tree / 'include'}", f"-I{tree / 'ggml' / 'include'}",
                f'-DPM_LLAMA_SOURCE="{deps.LLAMA_CPP_SDIST.requirement}"', f"-DPM_MAX_THREADS={max_threads(variant)}"]
    archives = [str(libs / lib) for lib in LLAMA_LIBS]
    if wasm:
        link_flags = [
            *spec["cflags"],
            "-sALLOW_MEMORY_GROWTH=1", "-sMAXIMUM_MEMORY=4GB",
            "-sMODULARIZE=1", "-sEXPORT_NAME=createPocketmind", "-sENVIRONMENT=web,worker,node",
            "-sEXPORTED_FUNCTIONS=" + ",".join("_" + name for name in EXPORTS),
            "-sEXPORTED_RUNTIME_METHODS=" + ",".join(RUNTIME_METHODS),
        ]
        extra_objects = [str(relaxed_kernels(plain(variant), libs))] if variant in RELAXED else []
        if "-pthread" in spec["cflags"]:
            link_flags += [f"-sPTHREAD_POOL_SIZE={WASM_MAX_THREADS}", "-Wno-pthreads-mem-growth"]
            extra_objects.append(str(unwind_fix(spec["cflags"])))
        name = module_name(variant)
        cmd = ["em++", *includes, str(HERE / "pocketmind.cpp"), *extra_objects, *archives, *link_flags]
        outputs = [f"{name}.js", f"{name}.wasm"] + ([f"{name}.worker.js"] if "-pthread" in spec["cflags"] else [])
    else:
        cmd = ["g++", "-O2", "-fPIC", "-shared", *includes, str(HERE / "pocketmind.cpp"),
               "-Wl,--no-undefined", *archives, "-lpthread", "-ldl", "-lm"]
        outputs = ["libpocketmind.so"]
    return cmd, outputs


def link(variant: str, tree: Path, libs: Path) -> list[Path]:
    """Compile the binding against the libraries; return the produced files (in the cache)."""
    wasm = variant.startswith("wasm")
    cmd, outputs = link_command(variant, tree, libs)
    key = digest(libs.name, *BINDING, portable(cmd[3:]), tool_version(["emcc" if wasm else "g++", "--version"]))
    odir = deps.cache_root() / f"out-{variant}-{key}"
    if (odir / ".ok").exists():
        return [odir / o for o in outputs]
    shutil.rmtree(odir, ignore_errors=True)
    odir.mkdir(parents=True)
    t0 = time.time()
    log(f"{variant}: compiling and linking the binding")
    env = emscripten_env() if wasm else dict(os.environ)
    subprocess.run([*cmd, "-o", str(odir / outputs[0])], check=True, env=env)
    (odir / ".ok").write_text(f"{time.time() - t0:.0f}\n")
    prune(f"out-{variant}", odir)
    log(f"{variant}: linked in {time.time() - t0:.0f} s")
    return [odir / o for o in outputs]


def kernel_includes(tree: Path) -> list[str]:
    """Include flags for ggml CPU sources built on their own. ggml-cpu/arch/wasm is on the path so that a copy of
    its quants.c kept elsewhere (the upstream one, in a test) still finds "../../quants.h"."""
    cpu = tree / "ggml" / "src" / "ggml-cpu"
    return [f"-I{i}" for i in (tree / "ggml" / "include", tree / "ggml" / "src", cpu, cpu / "arch" / "wasm")]


def kernel_module(tree: Path, sources: list[Path], out: Path, cflags: list[str],
                  link_flags: tuple[str, ...] | list[str] = (), relaxed: tuple[Path, ...] = ()) -> Path:
    """A Node module of ggml CPU sources from `tree` (kernels and a harness or benchmark of ours), for the kernel
    tests and benchmarks/wasm_kernels.py; the `relaxed` sources compiled with relaxed SIMD, as the relaxed variants
    compile RELAXED_SOURCE (run it with NODE_RELAXED_FLAG)."""
    objects = []
    for source in relaxed:
        objects.append(out.with_name(f"{out.stem}-{source.stem}-relaxed.o"))
        subprocess.run([*relaxed_command([*cflags, *kernel_includes(tree)], source), "-o", str(objects[-1])],
                       check=True, capture_output=True)
    cmd = ["emcc", *cflags, *kernel_includes(tree), *map(str, sources), *map(str, objects),
           "-sERROR_ON_UNDEFINED_SYMBOLS=0", "-sENVIRONMENT=node", "-sALLOW_MEMORY_GROWTH=1", *link_flags,
           "-o", str(out)]
    subprocess.run(cmd, check=True, env=emscripten_env(), capture_output=True)
    return out


def build(variant: str) -> list[Path]:
    """Build one variant (using the cache) and copy its outputs to build/<variant>/."""
    t0 = time.time()
    tree = source_tree()
    with exclusive(f"build-{plain(variant)}"):
        libs = build_libs(plain(variant), tree)
        produced = link(variant, tree, libs)
    dest = OUT / variant
    dest.mkdir(parents=True, exist_ok=True)
    copied = []
    for path in produced:
        target = dest / path.name
        # a new file renamed over the old one: a process that has the old library loaded keeps a valid mapping
        # (copying into it in place crashes that process)
        partial = target.with_name(target.name + ".partial")
        shutil.copy2(path, partial)
        os.replace(partial, target)
        copied.append(target)
    (dest / "BUILD_INFO.json").write_text(json.dumps({
        "variant": variant,
        "cache": [libs.name, produced[0].parent.name],
        "library_build_s": float((libs / ".ok").read_text()),
        "link_s": float((produced[0].parent / ".ok").read_text()),
    }, indent=2) + "\n")
    log(f"{variant}: ready in build/{variant}/ ({time.time() - t0:.1f} s this run)")
    return copied


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("variants", nargs="*", metavar="VARIANT",
                        help=f"any of {', '.join(ALL_VARIANTS)} (default: {', '.join(DEFAULT_VARIANTS)})")
    args = parser.parse_args(argv)
    unknown = [v for v in args.variants if v not in ALL_VARIANTS]
    if unknown:
        parser.error(f"unknown variant(s) {', '.join(unknown)}; choose from {', '.join(ALL_VARIANTS)}")
    for variant in args.variants or DEFAULT_VARIANTS:
        build(variant)
    return 0


if __name__ == "__main__":
    sys.exit(main())
