#!/usr/bin/env python3
"""Fine-tuning SmolLM2-135M-Instruct for the shipped label tasks, natively (CPython, the native library) and in
the Tasks page (headless Debian Chromium): training tokens/s, minutes per epoch, peak memory, and the test
accuracy of the zero-shot prompt before and after, with the same rows, seed and options in both.

Each run is `python -m pocketmind finetune`'s (train.finetune.FinetuneRun): the dev split divided into training and
dev rows with the seed (as for heads: docs/task_heads.md has the heads and prompts on the same test rows), the
last --layers blocks trained for --epochs, the best dev loss kept, written as Q8_0. Natively the written Q8_0 file
is measured too (what a person then uses); in the page "after" is the F32 model in memory.

    python3 benchmarks/finetune.py [--tasks support_tickets,review_sentiment] [--layers 2] [--epochs 1]
                                   [--threads 1] [--page-tasks support_tickets] [--page-windows N]
                                   [--out docs/finetune.md]
    python3 benchmarks/finetune.py --from-json RUN.json   # the table again from a kept run, no measuring
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import shlex
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
sys.path.insert(0, str(REPO / "wasm"))
sys.path.insert(0, str(REPO / "py"))

import build as wasm_build  # noqa: E402
import deps  # noqa: E402
from browser_site import CHROMIUM, CHROMIUM_ARGS, bounded, served_site  # noqa: E402
import numpy as np  # noqa: E402

from pocketmind import Model  # noqa: E402
from pocketmind.tasks import Task, parse_rows  # noqa: E402
from pocketmind.tasks.evaluate import macro_f1  # noqa: E402
from pocketmind.train.finetune import DEFAULTS as FINETUNE_DEFAULTS, FinetuneRun  # noqa: E402

MODEL = "SmolLM2-135M-Instruct.Q4_1"


def task_and_rows(name: str):
    task = Task.load(REPO / "data" / "tasks" / f"{name}.json")
    data = (REPO / "data" / f"{name}.csv").read_bytes()
    return task, parse_rows(data, task.text_column, task.label_column, task.labels)


def natively(name: str, args) -> dict:
    task, rows = task_and_rows(name)
    with tempfile.TemporaryDirectory(prefix="pm-ft-bench-") as work:
        out = Path(work) / "tuned.gguf"
        run = FinetuneRun(task, rows, deps.smollm2(), out, work, n_threads=args.threads, layers=args.layers,
                          epochs=args.epochs, lr=args.lr)
        t = time.perf_counter()
        for event in run:
            if event["type"] == "epoch":
                print(f"  native {name}: epoch {event['epoch']} dev loss {event['dev_loss']:.4f}", flush=True)
            elif event["type"] == "step":
                print(f"  native {name}: window {event['step']}/{event['steps']} loss {event['loss']:.3f} "
                      f"({time.perf_counter() - t:.0f} s)", flush=True)
        result = {**run.result(), "wall_s": time.perf_counter() - t}
        # the written Q8_0 model, as a person then uses it: the same label scoring on the test rows
        with Model.from_file(out) as tuned, tuned.context(n_ctx=2048, n_threads=args.threads) as ctx:
            t = time.perf_counter()
            pred = [task.run(ctx, r.text).label for r in run.test]
            ms = 1000 * (time.perf_counter() - t) / len(run.test)
            gold = [r.label for r in run.test]
            result["written"] = {"accuracy": float(np.mean([p == g for p, g in zip(pred, gold)])),
                                 "macro_f1": macro_f1(gold, pred, task.labels), "ms_per_item": ms,
                                 "bytes": out.stat().st_size}
    result["peak_rss"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # this process, so far
    return result


def in_page(page, name: str, args) -> dict:
    page.select_option("#task", f"tasks/{name}.json")
    page.wait_for_function(f"() => (window.pocketmindTasks.picker.current().shipped || {{}}).name === '{name}'")
    page.fill("#ft-layers", str(args.layers))
    page.fill("#ft-epochs", str(args.epochs))
    t = time.perf_counter()
    if args.page_windows:  # Stop after that many training windows: the page's speed without a whole epoch's wait
        page.evaluate("() => { window.ftRun = window.pocketmindTasks.finetune(); }")
        page.wait_for_function("(n) => (document.querySelector('#ft-loss').getAttribute('points') || '').trim()"
                               ".split(' ').filter(Boolean).length >= n", arg=args.page_windows, timeout=7_200_000)
        page.click("#stop-finetune")
        done = bounded(page, "() => window.ftRun", ms=1_800_000)
    else:
        done = bounded(page, "() => window.pocketmindTasks.finetune()", ms=7_200_000)
    done["wall_s"] = time.perf_counter() - t
    done["engine"] = page.evaluate("window.pocketmindTasks.client.engine")
    return done


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", default="support_tickets,review_sentiment")
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--lr", type=float, default=FINETUNE_DEFAULTS["lr"], help="AdamW's learning rate (natively; "
                        "the page uses its default)")
    parser.add_argument("--threads", type=int, default=1, help="native threads (the page picks its own)")
    parser.add_argument("--page-tasks", default="support_tickets", help="the tasks also run in the page ('' for "
                        "none): minutes per task")
    parser.add_argument("--page-windows", type=int, default=0, help="stop the page after this many training "
                        "windows (0: run every epoch); its minutes per epoch are then extrapolated")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "finetune.md",
                        help="the table; the raw results go beside it as .json")
    parser.add_argument("--from-json", type=Path, metavar="RUN_JSON",
                        help="measure nothing: write the table from the .json an earlier run kept")
    args = parser.parse_args()
    raw = args.out.with_suffix(".json")
    if args.from_json:
        run = json.loads(args.from_json.read_text(encoding="utf-8"))
        if args.from_json.resolve() != raw.resolve():  # the numbers stay beside the table they made
            raw.write_text(args.from_json.read_text(encoding="utf-8"), encoding="utf-8")
    else:
        run = measure(args, raw)
    text = render(run, raw)
    args.out.write_text(text, encoding="utf-8")
    print(text)
    print(f"wrote {args.out}")
    return 0


def measure(args, raw: Path) -> dict:
    """Every task natively, then in the page; the numbers are kept in `raw` after each task (a run cut short keeps
    what it measured)."""
    page_names = [n for n in args.page_tasks.split(",") if n]
    for variant in ["native", "wasm-st", "wasm-mt"] if page_names else ["native"]:
        wasm_build.build(variant)
    load0, t0 = os.getloadavg()[0], time.perf_counter()
    run = {"command": shlex.join(["python3", "benchmarks/finetune.py", *sys.argv[1:]]),
           "date": str(datetime.date.today()), "layers": args.layers, "epochs": args.epochs, "lr": args.lr,
           "threads": args.threads, "page_tasks": page_names, "loss": "answer tokens",
           "host": {"machine": platform.machine(), "cpus": os.cpu_count(), "python": platform.python_version()},
           "native": {}, "page": {}}

    def keep() -> None:
        run.update(minutes=(time.perf_counter() - t0) / 60, load=[load0, os.getloadavg()[0]])
        raw.write_text(json.dumps(run, default=str, indent=1) + "\n", encoding="utf-8")

    for name in [n for n in args.tasks.split(",") if n]:  # '' for none: the page alone
        run["native"][name] = natively(name, args)
        keep()
        print(f"{name}: native done", flush=True)
    if page_names:
        from playwright.sync_api import sync_playwright

        with served_site([deps.smollm2()]) as base, sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            for name in page_names:
                page = browser.new_page()  # a fresh page (and worker) per task
                page.goto(base + "tasks.html")
                bounded(page, "() => window.pocketmindTasks.ready")
                run["page"][name] = in_page(page, name, args)
                keep()
                page.close()
                print(f"{name}: page done", flush=True)
            browser.close()
    keep()
    return run


def render(run: dict, raw: Path) -> str:
    native, page_results, names = run["native"], run["page"], list(run["native"])
    host = run["host"]
    pct = lambda x: "–" if x is None else f"{100 * x:.1f} %"  # noqa: E731
    # a table may join the numbers of several runs (their .json files merged): each named with its command
    parts = run.get("parts") or [{"command": run["command"], "minutes": run["minutes"], "load": run["load"]}]
    runs = "; ".join(f"`{r['command']}` in {r['minutes']:.1f} min, " + (
        f"load average {r['load'][0]:.2f} at the start and {r['load'][1]:.2f} at the end" if r.get("load") else
        r.get("load_note", "load average not recorded")) for r in parts)
    lines = ["# Fine-tuning a small model for a task", "",
             f"Generated by `benchmarks/finetune.py` on {run['date']} (UTC) from {len(parts)} run(s): {runs}. "
             f"Machine: {host['machine']}, {host['cpus']} CPU(s), CPython {host['python']}: **the seconds are from "
             "a shared, noisy 2-core machine**.", "",
             f"{MODEL}: the model dequantized to F32, the last {run['layers']} of its 30 blocks (and the output norm) "
             f"trained with llama.cpp's AdamW (learning rate {run.get('lr', 2e-4):g}) on windows of 256 tokens of "
             "the task's zero-shot prompts with their labels"
             + (" (the loss counting prompt and answer tokens alike), "
                if run.get("loss", "all tokens") == "all tokens"
                else ", the loss counting only the answers' tokens (label and end of turn), ") + "for "
             f"{run['epochs']} epoch(s); the weights of the lowest dev loss kept and written as Q8_0. Accuracy is "
             "the task's zero-shot label scoring on the test rows (the same rows as docs/task_heads.md). "
             + (f"In the page (Tasks page, headless Chromium): {', '.join(page_results)}." if page_results else
                "**The page was not measured in this run.**"), "",
             "| task | where | test accuracy before | after (F32 in memory) | after (written Q8_0) | macro-F1 before "
             "/ after | trained parameters | training tokens/s (windows alone) | min per epoch (dev loss included) | "
             "convert + quantize s | "
             "measuring ms/item | peak memory |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name in names:
        for where, r in (("native", native[name]), ("page", page_results.get(name))):
            if r is None:
                continue
            per_epoch = f'{r["seconds"]["training"] / 60 / max(1, sum(1 for e in r["epochs"] if e["epoch"] > 0)):.1f}'
            after = f"**{pct(r['accuracy']['after'])}**"
            if r["stopped"] and r["tokens_trained"]:  # the page stopped after --page-windows windows
                windows = r["tokens_trained"] // 256
                per_window = r["seconds"]["steps"] / windows
                native_windows = native[name]["tokens_trained"] / 256 / max(1, run['epochs'])
                per_epoch = (f"{native_windows * per_window / 60:.1f} (extrapolated: {native_windows:.0f} windows "
                             f"× {per_window:.0f} s, the mean of {windows} measured; dev loss not included)")
                after = f"{pct(r['accuracy']['after'])} (stopped after {windows} window(s): not comparable)"
            written = r.get("written") if isinstance(r.get("written"), dict) else None
            n_measured = 2 * r["n"]["test"]
            ms = 1000 * r["seconds"]["measure"] / n_measured if n_measured else None
            if where == "native":
                memory = f"{r['peak_rss'] / 2**20:,.0f} MB RSS (process)"
                where_text = f"native, {run['threads']} thread(s)"
            else:
                memory = f"{r['wasm_memory_bytes'] / 2**20:,.0f} MB wasm heap"
                where_text = f"page, {r['engine']['variant']} {r['engine']['threads']} thread(s)"
            lines.append(
                f"| {name} | {where_text} | {pct(r['accuracy']['before'])} | {after} | "
                f"{pct(written['accuracy']) if written else '–'} | "
                f"{r['macro_f1']['before']:.3f} / {r['macro_f1']['after']:.3f} | {r['n_params_trained']:,} | "
                f"{r['tokens_per_s']:.1f} | {per_epoch} | "
                f"{r['seconds']['convert'] + r['seconds']['quantize']:.0f} | {ms:.0f} | {memory} |")
    lines += ["", "Rows per run: " + "; ".join(f"{n}: train {native[n]['n']['train']}, dev {native[n]['n']['dev']}, "
                                               f"test {native[n]['n']['test']}" for n in names) + ".", "",
              "Dev loss per epoch (epoch 0: untrained; the kept epoch in bold):", ""]
    for name in names:
        for where, r in (("native", native[name]), ("page", page_results.get(name))):
            if r is None:
                continue
            losses = ", ".join((f"**{e['dev_loss']:.4f}**" if e["epoch"] == r["best_epoch"] else f"{e['dev_loss']:.4f}")
                               for e in r["epochs"])
            lines.append(f"- {name}, {where}: {losses}")
    lines += ["", f"Raw results: `{raw.relative_to(REPO) if raw.is_relative_to(REPO) else raw}` (read by "
              "`benchmarks/task_levels.py`).", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
