#!/usr/bin/env python3
"""ggml's wasm dot-product kernels, one-row calls against the 2x2 calls of wasm-simd-2x2-dot.patch, and the
relaxed-SIMD builds' kernels against the plain ones, under Node.

    python3 benchmarks/wasm_kernels.py [--processes 3] [--rounds 30]

benchmarks/wasm_kernels.c is built against the pinned, patched llama.cpp source (the kernels the wasm builds run) and
times, for each type, a 512-row weight matrix times 64 activation columns (one-row calls against 2x2 calls,
alternated in each round, for the types with a 2x2 kernel), and one column row by row (as ggml's matmul walks a
generated token's products) for that matrix, which stays in the caches, and for a 48 MiB one, read from memory as a
model's weights are; row lengths are the models' (SmolLM2 576, Gemma-3 640) and one longer row (2048; K-quants
need a multiple of 256). Timings of the same code
differ by up to 1.5x between Node processes on this machine, so each process reports its own ratio and the table
gives their median. Also checks that both ways give the same bits. All of it is run twice per process round: by the
plain builds' kernels and by the relaxed-SIMD builds' (ggml's wasm kernel file compiled by clang-19 with relaxed
SIMD, as wasm/build.py compiles it for the relaxed variants), whose results must have the plain ones' bits. Writes
docs/wasm_kernels.md.
"""
from __future__ import annotations

import argparse
import datetime
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "wasm"), str(REPO / "benchmarks")]

import build as wasm_build  # noqa: E402
from machine import cpu_name, write_doc  # noqa: E402

ROW_LENGTHS = [576, 640, 2048]


BUILDS = ("plain", "relaxed")  # the plain wasm builds' kernels; the relaxed-SIMD builds' (wasm/build.py: RELAXED)


def build_bench(out: Path, build: str) -> Path:
    tree = wasm_build.source_tree()
    cpu = tree / "ggml" / "src" / "ggml-cpu"
    kernels = cpu / "arch" / "wasm" / "quants.c"
    sources = [cpu / "quants.c", tree / "ggml" / "src" / "ggml-quants.c", REPO / "benchmarks" / "wasm_kernels.c"]
    if build == "relaxed":
        return wasm_build.kernel_module(tree, sources, out, wasm_build.WASM_CFLAGS, relaxed=(kernels,))
    return wasm_build.kernel_module(tree, [kernels, *sources], out, wasm_build.WASM_CFLAGS)


def run(module: Path, build: str, n: int, rounds: int) -> list[dict]:
    flags = [wasm_build.NODE_RELAXED_FLAG] if build == "relaxed" else []
    out = subprocess.run(["node", "--no-experimental-fetch", *flags, str(module), str(n), "512", "64", str(rounds)],
                         check=True, capture_output=True, text=True, timeout=600).stdout
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--processes", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        modules = {build: build_bench(Path(tmp) / f"wasm_kernels_{build}.js", build) for build in BUILDS}
        # samples[(type, n)][build]: one result per process; the plain and relaxed processes run back to back, so
        # the i-th of each make a pair
        samples: dict[tuple[str, int], dict[str, list[dict]]] = {}
        for process in range(args.processes):
            for n in ROW_LENGTHS:
                for build in BUILDS:
                    for result in run(modules[build], build, n, args.rounds):
                        samples.setdefault((result["type"], n), {}).setdefault(build, []).append(result)
                        print(json.dumps({"build": build, **result}), flush=True)
    lines = [
        "# ggml's wasm dot-product kernels: one row at a time against 2x2",
        "",
        f"Written by `python3 benchmarks/wasm_kernels.py --processes {args.processes} --rounds {args.rounds}` on "
        f"{datetime.date.today()} ({cpu_name()}, Node {node_version()}). A weight matrix of 512 rows of n values, "
        "walked as ggml's matmul walks it: times 64 activation columns (a prompt batch) by one-row calls (ggml's "
        "kernels; Q4_1's splits its nibbles after widening, `wasm-simd-q4_1-nibbles.patch`; the K-quants' sum "
        "in 16-bit lanes, `wasm-simd-q4_K-q5_K-one-row.patch`, `wasm-simd-q6_K-kernels.patch`) and by 2x2 calls "
        "(`wasm/patches/wasm-simd-2x2-dot.patch`, Q6_K's `wasm-simd-q6_K-kernels.patch`; Q5_K has none: –), the ways "
        "alternated in each round; "
        "and one column (a generated token) row by row, as ggml walks it, for that matrix (in the caches) and for a "
        "48 MiB one (read from memory, as a model's weights are for each token). Milliseconds are each process's "
        "median round (then the median over processes); a speed-up is the median of the processes' own ratios, "
        "since the same code's timings differ by up to 1.5x between processes on this machine.",
        "",
        "| type | n | matrix: one row, ms | 2x2, ms | speed-up | one column, 512 rows, ms | one column, 48 MiB: GB/s "
        "| same bits |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for (kind, n), builds in sorted(samples.items()):
        rows = builds["plain"]

        def med(key: str) -> float:
            return statistics.median(r[key] for r in rows)

        def ratio(slow: str, fast: str) -> float:
            return statistics.median(r[slow] / r[fast] for r in rows)

        two = med("matrix_2x2_ms") > 0  # 0: the type has no 2x2 kernel
        lines.append(f"| {kind} | {n} | {med('matrix_one_row_ms'):.2f} | "
                     + (f"{med('matrix_2x2_ms'):.2f} | {ratio('matrix_one_row_ms', 'matrix_2x2_ms'):.2f}x | " if two
                        else "– | – | ")
                     + f"{med('vector_one_row_ms'):.3f} | "
                     f"{statistics.median(r['large_bytes'] / r['large_vector_ms'] / 1e6 for r in rows):.1f} | "
                     f"{'yes' if all(r['same_bits'] for r in rows) else 'NO'} |")
    lines += [
        "",
        "## The relaxed-SIMD builds' kernels against the plain ones",
        "",
        "The same benchmark built a second time with ggml's wasm kernel file compiled as the relaxed-SIMD engine "
        "builds compile it (`wasm/build.py`: RELAXED, `wasm/patches/wasm-simd-relaxed-dot.patch`; Node with "
        f"`{wasm_build.NODE_RELAXED_FLAG}`), each of its processes run just after a plain one; a speed-up is the "
        "median over those pairs of plain time / relaxed time. Same bits: every product of the relaxed run (one "
        "row, one column of the 48 MiB matrix) has the plain run's bits (a hash of them compared).",
        "",
        "| type | n | one row: relaxed, ms | speed-up | 2x2: relaxed, ms | speed-up | one column, 48 MiB: relaxed, "
        "GB/s | speed-up | same bits as plain |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for (kind, n), builds in sorted(samples.items()):
        pairs = list(zip(builds["plain"], builds["relaxed"]))

        def relaxed(key: str) -> float:
            return statistics.median(r[key] for _, r in pairs)

        def gain(key: str) -> str:
            return f"{statistics.median(p[key] / r[key] for p, r in pairs):.2f}x"

        two = relaxed("matrix_2x2_ms") > 0
        lines.append(f"| {kind} | {n} | {relaxed('matrix_one_row_ms'):.2f} | {gain('matrix_one_row_ms')} | "
                     + (f"{relaxed('matrix_2x2_ms'):.2f} | {gain('matrix_2x2_ms')} | " if two else "– | – | ")
                     + f"{statistics.median(r['large_bytes'] / r['large_vector_ms'] / 1e6 for _, r in pairs):.1f} | "
                     f"{gain('large_vector_ms')} | "
                     f"{'yes' if all(p['bits'] == r['bits'] and r['same_bits'] for p, r in pairs) else 'NO'} |")
    write_doc(REPO / "docs" / "wasm_kernels.md", "\n".join(lines))
    print("\n".join(lines))
    return 0


def node_version() -> str:
    return subprocess.run(["node", "--version"], capture_output=True, text=True, check=True).stdout.strip()


if __name__ == "__main__":
    sys.exit(main())
