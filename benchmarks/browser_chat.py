#!/usr/bin/env python3
"""The chat page in headless Chromium, with SmolLM2-135M-Instruct Q4_1:

- prompt and generation tokens/s through the Python glue (Pyodide) against the same wasm module driven from JS
  alone (the engine-check page), in the same browser, same threads: the glue's overhead;
- time from navigation to the first streamed token, with nothing cached and with the model cached;
- bytes transferred before the model download starts, and the boot stages (engine, Python, glue).

    python3 benchmarks/browser_chat.py [--prompt 64] [--gen 64] [--rounds 3]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "wasm"))

from browser_site import CHROMIUM, CHROMIUM_ARGS, bounded, served_site  # noqa: E402
import deps  # noqa: E402

QUESTION = "What is the capital of France?"


def first_token(context, url: str, model_file: str) -> dict:
    """Open the chat, ask, and time navigation -> first text; count bytes fetched before the model request."""
    page = context.new_page()
    sizes = {"before_model": 0, "model_started": False}

    def on_finished(request):
        # the service worker's precache of the whole app (~23 MB) runs alongside: not what the page waits for
        if sizes["model_started"] or request.service_worker is not None:
            return
        try:
            sizes["before_model"] += max(0, request.sizes()["responseBodySize"])  # -1: served by the service worker
        except Exception:
            pass

    def on_request(request):
        if request.url.endswith(model_file):
            sizes["model_started"] = True

    context.on("request", on_request)
    context.on("requestfinished", on_finished)
    t0 = time.perf_counter()
    page.goto(url)
    bounded(page, "() => window.pocketmindChat.ready")
    ready_s = time.perf_counter() - t0
    page.evaluate("""(q) => { window.firstText = new Promise((resolve) => {
        const watch = new MutationObserver(() => {
            const a = document.querySelector('.message.assistant');
            if (a && a.textContent) { watch.disconnect(); resolve(performance.now()); } });
        watch.observe(document.querySelector('#messages'), {subtree: true, childList: true, characterData: true}); });
        window.answer = window.pocketmindChat.ask(q); }""", QUESTION)
    bounded(page, "() => window.firstText")
    first_s = time.perf_counter() - t0
    bounded(page, "() => window.answer")
    stages = page.locator("#boot-text").text_content()
    storage = page.evaluate("window.pocketmindChat.storage")
    context.remove_listener("request", on_request)
    context.remove_listener("requestfinished", on_finished)
    page.close()
    return {"ready_s": ready_s, "first_token_s": first_s, "bytes_before_model": sizes["before_model"],
            "stages": stages, "from_cache": storage["fromCache"]}


def main() -> int:
    from playwright.sync_api import sync_playwright

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompt", type=int, default=64)
    parser.add_argument("--gen", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    model = deps.smollm2()
    with served_site([model]) as url:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            context = browser.new_context()
            cold = first_token(context, url, model.name)
            warm = first_token(context, url, model.name)

            glue_page = context.new_page()
            glue_page.goto(url)
            bounded(glue_page, "() => window.pocketmindChat.ready")
            engine_page = context.new_page()
            engine_page.goto(url + "engine-check.html")
            bounded(engine_page, "() => window.pocketmindCheck.ready")
            glue, direct = [], []
            for _ in range(args.rounds):  # interleaved: the machine's noise hits both alike
                glue.append(bounded(glue_page, "([p, g]) => window.pocketmindChat.bench(p, g)", [args.prompt, args.gen]))
                direct.append(bounded(engine_page, "([p, g]) => window.pocketmindCheck.bench(p, g)",
                                      [args.prompt, args.gen]))
            threads = glue_page.evaluate("window.pocketmindChat.engine.threads")
            browser.close()

    med = lambda runs, key: statistics.median(r[key] for r in runs)  # noqa: E731
    print(f"\nheadless Chromium, SmolLM2-135M-Instruct Q4_1, wasm-mt with {threads} threads, "
          f"pp {args.prompt} / tg {args.gen} tokens, median of {args.rounds}\n")
    print("| path | pp tokens/s | tg tokens/s |\n|---|---:|---:|")
    print(f"| JS driving the wasm module | {med(direct, 'pp_tps'):.1f} | {med(direct, 'tg_tps'):.1f} |")
    print(f"| Python glue in Pyodide | {med(glue, 'pp_tps'):.1f} | {med(glue, 'tg_tps'):.1f} |")
    print(f"\nglue overhead: pp {100 * (1 - med(glue, 'pp_tps') / med(direct, 'pp_tps')):.1f} %, "
          f"tg {100 * (1 - med(glue, 'tg_tps') / med(direct, 'tg_tps')):.1f} % (target <= 5 %); "
          f"glue generated {glue[-1]['n_generated']} of {args.gen} tokens")
    for name, run in (("nothing cached", cold), ("model cached", warm)):
        print(f"\n{name}: ready (model loaded) {run['ready_s']:.2f} s, first token {run['first_token_s']:.2f} s "
              f"after navigation; model from cache: {run['from_cache']}; "
              f"{run['bytes_before_model'] / 1048576:.1f} MB transferred before the model request; "
              f"last boot stage: {run['stages']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
