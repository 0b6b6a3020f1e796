#!/usr/bin/env python3
"""The Python glue's overhead per generated token, measured in one page: the Benchmark page's own chat worker, the
same model, the same context and the same 64 prompt tokens, three ways, alternated within each round:

- **JS**: the engine driven from JS alone, in that worker (pocketmind_api.js's greedy loop, as the engine-check
  page does in benchmarks/wllama_compare.py: a warm-up of the same shapes, then a timed prompt and generation);
- **glue**: the glue's speed test in that worker (ChatService.start_bench, pocketmind.bench: the generation loop of
  an answer, greedy), its events stepped through without being posted;
- **page**: the Benchmark page's run: the same speed test, its progress events posted to the page and drawn.

Generation tokens/s and prompt tokens/s per way, medians over the rounds, and the overheads: per generated token,
time(glue) / time(JS) - 1 (the issue's "glue overhead", target <= 3 %) and time(page) / time(JS) - 1 (what the
page's events and drawing add). 1 thread: the single-thread build (the page not cross-origin isolated); 2 threads:
the multi-thread build.

    python3 benchmarks/glue_overhead.py [--rounds 5] [--gen 64] [--models smollm2,gemma]

Writes docs/glue_overhead.md and docs/glue_overhead.json.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "wasm"), str(REPO / "py")]

import build_site  # noqa: E402
import deps  # noqa: E402
from browser_site import THREAD_MODES, bare_page, bounded, serve  # noqa: E402
from machine import load_average, run_header, write_doc  # noqa: E402

from pocketmind import Model, bench  # noqa: E402
from pocketmind.native import NativeBackend  # noqa: E402

MODELS = {"smollm2": ("SmolLM2-135M-Instruct Q4_1", deps.smollm2), "gemma": ("Gemma-3-270M Q4_K_M", deps.gemma3_270m)}
WAYS = ["JS", "glue", "page"]
STEP_MS = 900_000

# In the chat worker (its globals engine and service): the JS-only loop on the glue's own model and context.
JS_RUN = """async ([tokens, nGen]) => {
  const { A } = engine, model = service.ctx.model.ptr, ctx = service.ctx.ptr;
  for (let i = 0; i < 2; i++) A.greedy(model, ctx, tokens, 9);  // warm-up with the same shapes
  const timed = (n) => { const t0 = performance.now(); const out = A.greedy(model, ctx, tokens, n);
                         return [(performance.now() - t0) / 1000, out.length]; };
  const [prompt] = timed(1);
  const [all, n] = timed(nGen + 1);
  return { pp_tps: tokens.length / prompt, tg_tps: (n - 1) / (all - prompt), n_generated: n - 1 };
}"""

# In the chat worker: the glue's speed test, every event stepped through and none posted.
GLUE_RUN = """async ([tokens, nGen]) => {
  service.start_bench(JSON.stringify({ tokens, n_gen: nGen }));
  let event, last = null;
  while ((event = service.step()) !== undefined && event !== null) last = event;
  return JSON.parse(last);
}"""

PAGE_RUN = "([t, g]) => window.pocketmindBenchmark.run({tokens: t, nPrompt: t.length, nGen: g})"


def measure(playwright, url: str, threads: int, tokens: list[int], n_gen: int, rounds: int) -> dict:
    """All rounds of one model and thread count in one page: {way: [sample, ...]}, and the engine the page ran."""
    with bare_page(playwright) as (page, errors):
        page.goto(url + "benchmark.html")
        ready = bounded(page, "() => window.pocketmindBenchmark.ready", ms=STEP_MS)
        engine = ready["engine"]
        if engine["threads"] != threads:
            raise RuntimeError(f"the page ran {engine['threads']} threads, asked for {threads}")
        worker = next(w for w in page.workers if "chat-worker" in w.url)
        samples = {way: [] for way in WAYS}
        for r in range(rounds):
            for way in WAYS[r % len(WAYS):] + WAYS[:r % len(WAYS)]:
                if way == "page":
                    got = bounded(page, PAGE_RUN, [tokens, n_gen], ms=STEP_MS)[0]
                else:
                    got = worker.evaluate(JS_RUN if way == "JS" else GLUE_RUN, [tokens, n_gen])
                samples[way].append({"pp_tps": got["pp_tps"], "tg_tps": got["tg_tps"],
                                     "n_generated": got["n_generated"], "load": os.getloadavg()[0]})
            print(f"  round {r + 1}: " + ", ".join(f"{w} {samples[w][-1]['tg_tps']:.1f}" for w in WAYS)
                  + " generated tokens/s", flush=True)
        if errors:
            raise RuntimeError(f"page errors: {errors}")
        return {"engine": engine, "samples": samples}


def summary(samples: dict) -> dict:
    med = {way: {k: statistics.median(s[k] for s in samples[way]) for k in ("pp_tps", "tg_tps")} for way in WAYS}
    # per generated token, time = 1 / rate: overhead = time(way) / time(JS) - 1
    over = {way: med["JS"]["tg_tps"] / med[way]["tg_tps"] - 1 for way in ("glue", "page")}
    # the same ratio within each round (the ways of one round ran back to back)
    per_round = {way: [j["tg_tps"] / s["tg_tps"] - 1 for j, s in zip(samples["JS"], samples[way])]
                 for way in ("glue", "page")}
    return {"median": med, "overhead": over, "overhead_per_round": per_round}


def write_docs(report: dict) -> None:
    lines = ["# The Python glue's overhead per generated token", "",
             f"`{report['command']}` on {report['date']} (commit `{report['commit']}`), {report['machine']}; "
             f"{report['gen']} greedy tokens after the same {report['prompt']} prompt tokens (the benchmark text's "
             f"first), medians of {report['rounds']} rounds. Load average (1, 5, 15 min) before and after: "
             f"{report['load_before']}; {report['load_after']}.", "",
             "All three ways run in the Benchmark page's chat worker, on the glue's own model and context, alternated "
             "within each round: **JS** (the engine driven from JS alone: pocketmind_api.js's greedy loop), **glue** "
             "(the glue's speed test, pocketmind.bench through ChatService, its events not posted), **page** (the "
             "Benchmark page's run: the same test, its progress posted to the page and drawn). Overhead per "
             "generated token = time per token of the way / time per token of JS - 1.", "",
             "| model | threads | engine | JS tg/s | glue tg/s | page tg/s | JS pp/s | glue pp/s | page pp/s "
             "| glue overhead | page overhead | glue overhead per round |",
             "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for row in report["rows"]:
        m, o = row["summary"]["median"], row["summary"]["overhead"]
        rounds = ", ".join(f"{x * 100:+.1f}" for x in row["summary"]["overhead_per_round"]["glue"])
        lines.append(f"| {row['model']} | {row['threads']} | {row['engine']['variant']} | "
                     + " | ".join(f"{m[w]['tg_tps']:.1f}" for w in WAYS) + " | "
                     + " | ".join(f"{m[w]['pp_tps']:.1f}" for w in WAYS)
                     + f" | {o['glue'] * 100:+.1f} % | {o['page'] * 100:+.1f} % | {rounds} |")
    lines += ["", "Target (issue 11): glue overhead <= 3 % per generated token. "
              + "; ".join(f"{row['model']}, {row['threads']} thread(s): "
                          f"{row['summary']['overhead']['glue'] * 100:+.1f} % "
                          f"({'met' if row['summary']['overhead']['glue'] <= 0.03 else 'missed'})"
                          for row in report["rows"]) + ".", ""]
    write_doc(REPO / "docs" / "glue_overhead.md", "\n".join(lines), report)


def main() -> int:
    from playwright.sync_api import sync_playwright

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--prompt", type=int, default=64)
    parser.add_argument("--gen", type=int, default=64)
    parser.add_argument("--models", default="smollm2,gemma", help="comma-separated: " + ", ".join(MODELS))
    parser.add_argument("--no-write", action="store_true", help="print only, leave docs/ alone")
    args = parser.parse_args()
    keys = [k.strip() for k in args.models.split(",") if k.strip()]
    if args.rounds < 1 or not keys or any(k not in MODELS for k in keys):
        parser.error(f"--rounds >= 1 and --models among {', '.join(MODELS)}")
    # taken now: the code that runs, not what the tree holds at the end
    report = {**run_header(), "rounds": args.rounds, "prompt": args.prompt, "gen": args.gen, "rows": []}
    lib = REPO / "build" / "native" / "libpocketmind.so"
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as p:
        for key in keys:
            name, locate = MODELS[key]
            path = locate()
            with Model.from_file(path, NativeBackend(lib)) as m:
                tokens = bench.text_prompt(m, args.prompt)
            out = Path(tmp) / key
            build_site.build_site(out, [path])
            for threads, headers in THREAD_MODES:
                with serve(out, headers) as url:
                    print(f"{name}, {threads} thread(s):", flush=True)
                    got = measure(p, url, threads, tokens, args.gen, args.rounds)
                row = {"model": name, "threads": threads, **got, "summary": summary(got["samples"])}
                report["rows"].append(row)
                o = row["summary"]["overhead"]
                print(f"  glue overhead {o['glue'] * 100:+.1f} %, page overhead {o['page'] * 100:+.1f} %", flush=True)
    report["load_after"] = load_average()
    if not args.no_write:
        write_docs(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
