#!/usr/bin/env python3
"""Where the Python glue's time per generated token goes, in the chat page's worker (headless Chromium, SmolLM2-135M
Q4_1, the multi-thread build): one token's loop timed call by call, and the same decodes made straight from JS on
the same context, alternated in each round so the machine's noise hits both alike.

    python3 benchmarks/glue_token_cost.py [--rounds 5] [--tokens 64]

Per round: --tokens decodes through Python (ctx.decode: token ids copied into the scratch buffer through Pyodide's
bridge, then pm_decode), each followed by the rest of a greedy token's work in the glue (ctx.logits, argmax,
is_eog, token_bytes, the text stream, the event's JSON); then --tokens decodes of the same tokens at the same
positions called from JS (the id written into the same scratch buffer, then _pm_decode), as the JS-only engine page
does. Medians over the rounds, in ms per token. Writes docs/glue_token_cost.md.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "wasm"), str(REPO / "benchmarks")]

import deps  # noqa: E402
from browser_site import CHROMIUM, CHROMIUM_ARGS, bounded, served_site  # noqa: E402
from machine import cpu_name  # noqa: E402

PARTS = ["decode", "logits", "argmax", "is_eog", "token_bytes", "stream", "json"]

# One round, in the worker's Python: the glue's loop timed part by part, then the prompt decoded again and the
# same tokens decoded from JS (run_js below) for the JS-only timing.
PYTHON_ROUND = r'''
import json, time
import numpy as np
from pocketmind.bench import text_prompt
from pocketmind.generate import TextStream

ctx = service.ctx
model = ctx.model
prompt = text_prompt(model, 64)
ctx.kv_clear()
ctx.decode(prompt)
pos, tok = len(prompt), int(np.argmax(ctx.logits()))
spent = dict.fromkeys(PARTS, 0.0)
stream, tokens = TextStream(()), []
for _ in range(N):
    marks = [time.perf_counter()]
    ctx.decode([tok], pos=pos)
    marks.append(time.perf_counter())
    logits = ctx.logits()
    marks.append(time.perf_counter())
    tokens.append(tok)
    tok = int(np.argmax(logits))
    marks.append(time.perf_counter())
    model.is_eog(tok)
    marks.append(time.perf_counter())
    piece = model.token_bytes(tok)
    marks.append(time.perf_counter())
    text = stream.push(piece)
    marks.append(time.perf_counter())
    json.dumps({"type": "text", "text": text, "token": tok})
    marks.append(time.perf_counter())
    for name, a, b in zip(PARTS, marks, marks[1:]):
        spent[name] += b - a
    pos += 1
ctx.kv_clear()
ctx.decode(prompt)
scratch = ctx._tokens_arg([0])[0]
json.dumps({"ms": {k: 1000 * v / N for k, v in spent.items()}, "ctx": ctx.ptr, "scratch": scratch,
            "start": len(prompt), "tokens": tokens})
'''

RUN_JS = """async ({ code, n }) => {
    const py = await python;
    py.globals.set("service", service);
    py.globals.set("N", n);
    py.globals.set("PARTS", py.toPy(%s));
    const round = JSON.parse(py.runPython(code));
    const M = engine.M;
    const t = performance.now();
    round.tokens.forEach((token, i) => {
        M.HEAP32[round.scratch >>> 2] = token;
        const status = M._pm_decode(round.ctx, round.scratch, 1, round.start + i, 0);
        if (status !== 0) throw new Error(`pm_decode returned ${status}`);
    });
    round.ms.js_decode = (performance.now() - t) / round.tokens.length;
    M._pm_kv_clear(round.ctx);
    return round;
}""" % json.dumps(PARTS)


def main() -> int:
    from playwright.sync_api import sync_playwright

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=64)
    args = parser.parse_args()
    rounds = []
    loads = [os.getloadavg()]
    with served_site([deps.smollm2()]) as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page()
        page.goto(url)
        bounded(page, "() => window.pocketmindChat.ready")
        page.wait_for_function("() => true")  # a turn of the page's loop: its workers are listed
        worker = next(w for w in page.workers if w.url.endswith("/chat-worker.js"))
        engine = page.evaluate("window.pocketmindChat.engine")
        for r in range(args.rounds):
            result = bounded(worker, RUN_JS, {"code": PYTHON_ROUND, "n": args.tokens})
            rounds.append(result["ms"])
            print(f"round {r + 1}: " + ", ".join(f"{k} {v:.3f}" for k, v in result["ms"].items()), flush=True)
        browser.close()
    loads.append(os.getloadavg())
    median = {k: statistics.median(r[k] for r in rounds) for k in rounds[0]}
    glue = sum(median[k] for k in PARTS)
    rest = glue - median["decode"]
    lines = [
        "# The Python glue's time per generated token",
        "",
        f"`python3 benchmarks/glue_token_cost.py --rounds {args.rounds} --tokens {args.tokens}`: the chat page's worker "
        f"in headless Chromium, SmolLM2-135M-Instruct Q4_1, engine {engine['variant']} with {engine['threads']} "
        f"threads, {args.tokens} greedy tokens after a 64-token prompt per round, medians of {args.rounds} rounds, "
        f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC on {cpu_name()}, {os.cpu_count()} "
        f"logical cores; load average (1, 5, 15 min) before and after: "
        + "; ".join(" ".join(f"{x:.2f}" for x in load) for load in loads) + ".",
        "",
        "| part of one token | ms (median) |",
        "|---|---:|",
        *[f"| {k} (glue) | {median[k]:.3f} |" for k in PARTS],
        f"| **all of the glue's token** | **{glue:.3f}** |",
        f"| decode called from JS, same context and tokens | {median['js_decode']:.3f} |",
        "",
        f"Outside the decode, the glue's token costs {rest:.3f} ms, {100 * rest / median['js_decode']:.1f} % of a "
        f"decode from JS. The decode through Python takes {median['decode'] - median['js_decode']:+.3f} ms "
        f"({100 * (median['decode'] / median['js_decode'] - 1):+.1f} %) against the same decode from JS.",
        "",
        "Per round (ms): " + "; ".join(", ".join(f"{k} {v:.3f}" for k, v in r.items()) for r in rounds),
        "",
    ]
    out = REPO / "docs" / "glue_token_cost.md"
    out.write_text("\n".join(lines))
    print("\n" + out.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
