"""One list of C functions: capi.SIGNATURES is the source; the header must declare exactly those functions with
the same types, and the wasm modules export exactly them (plus what the JS code around the module reads)."""
from __future__ import annotations

import re
from pathlib import Path

import build as wasm_build
from pocketmind.capi import SIGNATURES

REPO = Path(__file__).resolve().parents[1]
HEADER = REPO / "wasm" / "pocketmind.h"


def type_code(c_type: str) -> str:
    c_type = " ".join(c_type.replace("const", " ").split())
    if "*" in c_type or c_type == "size_t":
        return "p"  # a wasm32 i32 / a native pointer-sized integer
    return {"int32_t": "i", "double": "d", "void": "v"}[c_type]


def param_code(param: str) -> str:
    param = param.strip()
    return "p" if "*" in param else type_code(param.rsplit(None, 1)[0])  # the type, without the name


def header_signatures(text: str) -> dict[str, tuple[str, str]]:
    text = re.sub(r"/\*.*?\*/|//[^\n]*", " ", text, flags=re.S)
    found = {}
    for ret, name, args in re.findall(r"([A-Za-z_][\w\s]*?[\s*]+)(pm_\w+)\s*\(([^)]*)\)\s*;", text):
        params = [] if args.strip() in ("", "void") else args.split(",")
        codes = "".join(param_code(p) for p in params)
        assert name not in found, f"{name} is declared twice"
        found[name] = (type_code(ret), codes)
    return found


def test_header_parser_reads_types():
    text = ("/* pm_fake(int32_t x); */ const float * pm_a(pm_context * ctx, int32_t i);\n"
            "void pm_b(void);\ndouble   pm_c(const pm_model * m, size_t n, const char ** out);")
    assert header_signatures(text) == {"pm_a": ("p", "pi"), "pm_b": ("v", ""), "pm_c": ("d", "ppp")}


def test_header_and_table_agree():
    declared = header_signatures(HEADER.read_text())
    assert len(declared) >= 30
    assert sorted(declared) == sorted(SIGNATURES), (set(declared) ^ set(SIGNATURES))
    mismatched = {name: (declared[name], SIGNATURES[name]) for name in SIGNATURES if declared[name] != SIGNATURES[name]}
    assert not mismatched, f"header vs capi.SIGNATURES: {mismatched}"


def test_wasm_exports_are_the_table():
    assert wasm_build.EXPORTS == list(SIGNATURES)


def test_js_uses_only_what_the_module_exports():
    """Every Module member the JS and Pyodide code reads is exported (exports nothing uses were dropped)."""
    heap_views = {"HEAP8", "HEAP16", "HEAP32", "HEAPU8", "HEAPU16", "HEAPU32", "HEAPF32", "HEAPF64"}
    exported = {"_" + name for name in wasm_build.EXPORTS} | set(wasm_build.RUNTIME_METHODS) | heap_views
    files = [*REPO.glob("site/*.js"), *REPO.glob("wasm/*.js"), *REPO.glob("wasm/*.cjs"),
             REPO / "py" / "pocketmind" / "pyodide_backend.py"]
    used = {(m, f.name) for f in files for m in re.findall(r"\bM\.([A-Za-z_]\w*)", f.read_text())}
    assert len(used) > 20
    missing = sorted((m, f) for m, f in used if m not in exported)
    assert not missing, missing


def test_constants_agree_with_the_header():
    from pocketmind import capi
    header = HEADER.read_text()
    assert re.search(rf"PM_EMBEDDINGS_MAX_SEQS\s*=\s*{capi.EMBEDDINGS_MAX_SEQS}\b", header)
    assert re.search(rf"PM_CONTEXT_EMBEDDINGS\s*=\s*{capi.CONTEXT_EMBEDDINGS},", header)
    assert re.search(rf"PM_CONTEXT_KV_F32\s*=\s*{capi.CONTEXT_KV_F32},", header)
