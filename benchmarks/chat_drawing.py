#!/usr/bin/env python3
"""What drawing an answer costs the chat page's generation speed, in headless Chromium with SmolLM2-135M-Instruct Q4_1:
in one chat page, the same greedy question is asked with the answer drawn as it streams and with the conversation
hidden (display: none, so the page lays out and paints nothing), alternated within each round. The speed is the
worker's own (the "done" message's generation_tokens_per_s: the glue's time from the first to the last token).

    python3 benchmarks/chat_drawing.py [--rounds 5] [--gen 64] [--site LABEL=DIR ...] [--no-this]

Sites: this tree (built now) and any --site built earlier (e.g. from the commit before a change); 1 thread (the page
not cross-origin isolated: the single-thread build) and 2 threads. Writes docs/chat_drawing.md and .json.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "wasm")]

import build_site  # noqa: E402
import deps  # noqa: E402
from browser_site import THREAD_MODES, bare_page, bounded, serve  # noqa: E402
from machine import load_average, run_header, write_doc  # noqa: E402

QUESTION = "Write a long story about a lighthouse keeper and the storm that lasted a week."
WAYS = ["drawn", "hidden"]
STEP_MS = 600_000

HIDE = "(hidden) => { document.querySelector('#messages').style.display = hidden ? 'none' : ''; }"
ASK = """async ([q, n]) => {
  document.querySelector('#temperature').value = '0';
  document.querySelector('#max-tokens').value = String(n);
  window.pocketmindChat.newChat();
  const done = await window.pocketmindChat.ask(q);
  return { tg_tps: done.generation_tokens_per_s, n_generated: done.n_generated };
}"""


def measure(playwright, url: str, threads: int, n_gen: int, rounds: int) -> dict:
    with bare_page(playwright) as (page, errors):
        page.goto(url)  # index.html: the chat page
        bounded(page, "() => window.pocketmindChat.ready", ms=STEP_MS)
        bounded(page, "() => new Promise((r) => { const t = () => window.pocketmindChat.card ? r() : "
                      "setTimeout(t, 50); t(); })", ms=STEP_MS)
        engine = page.evaluate("window.pocketmindChat.engine")
        if engine["threads"] != threads:
            raise RuntimeError(f"the page ran {engine['threads']} threads, asked for {threads}")
        bounded(page, ASK, [QUESTION, 8], ms=STEP_MS)  # warm-up
        samples = {way: [] for way in WAYS}
        for r in range(rounds):
            for way in (WAYS if r % 2 == 0 else WAYS[::-1]):
                page.evaluate(HIDE, way == "hidden")
                samples[way].append(bounded(page, ASK, [QUESTION, n_gen], ms=STEP_MS))
            print(f"  round {r + 1}: " + ", ".join(f"{w} {samples[w][-1]['tg_tps']:.1f}" for w in WAYS)
                  + " generated tokens/s", flush=True)
        page.evaluate(HIDE, False)
        if errors:
            raise RuntimeError(f"page errors: {errors}")
        return {"engine": engine, "samples": samples}


def write_docs(report: dict) -> None:
    lines = ["# What drawing an answer costs the chat page", "",
             f"`{report['command']}` on {report['date']} (commit `{report['commit']}`), {report['machine']}; "
             f"SmolLM2-135M-Instruct Q4_1, greedy, at most {report['gen']} tokens, medians of {report['rounds']} "
             f"rounds. Load average (1, 5, 15 min) before and after: {report['load_before']}; "
             f"{report['load_after']}.", "",
             "In one chat page, the same question answered with the answer drawn as it streams and with the "
             "conversation hidden (nothing laid out or painted), alternated within each round; generation tokens/s "
             "as the worker measured it. Drawing cost = time per token drawn / time per token hidden - 1.", "",
             "| site | threads | engine | drawn tg/s | hidden tg/s | drawing cost | per round |",
             "|---|---:|---|---:|---:|---:|---|"]
    for row in report["rows"]:
        s = row["samples"]
        med = {w: statistics.median(x["tg_tps"] for x in s[w]) for w in WAYS}
        per_round = ", ".join(f"{(h['tg_tps'] / d['tg_tps'] - 1) * 100:+.1f}" for d, h in zip(s["drawn"], s["hidden"]))
        lines.append(f"| {row['site']} | {row['threads']} | {row['engine']['variant']} | {med['drawn']:.1f} | "
                     f"{med['hidden']:.1f} | {(med['hidden'] / med['drawn'] - 1) * 100:+.1f} % | {per_round} |")
    lines.append("")
    write_doc(REPO / "docs" / "chat_drawing.md", "\n".join(lines), report)


def main() -> int:
    from playwright.sync_api import sync_playwright

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--gen", type=int, default=64)
    parser.add_argument("--site", action="append", default=[], metavar="LABEL=DIR", help="a site built earlier")
    parser.add_argument("--no-this", action="store_true", help="measure only the --site folders")
    parser.add_argument("--no-write", action="store_true", help="print only, leave docs/ alone")
    args = parser.parse_args()
    sites = [tuple(s.split("=", 1)) for s in args.site]
    if args.rounds < 1 or any(len(s) != 2 for s in sites) or (args.no_this and not sites):
        parser.error("--rounds >= 1, --site LABEL=DIR, and a site to measure")
    # taken now: the code that runs, not what the tree holds at the end
    report = {**run_header(), "rounds": args.rounds, "gen": args.gen, "rows": []}
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as p:
        folders = [(label, Path(folder)) for label, folder in sites]
        if not args.no_this:
            build_site.build_site(Path(tmp) / "this", [deps.smollm2()])
            folders.append(("this tree", Path(tmp) / "this"))
        for threads, headers in THREAD_MODES:
            for label, folder in folders:
                with serve(folder, headers) as url:
                    print(f"{label}, {threads} thread(s):", flush=True)
                    got = measure(p, url, threads, args.gen, args.rounds)
                report["rows"].append({"site": label, "threads": threads, **got})
    report["load_after"] = load_average()
    if not args.no_write:
        write_docs(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
