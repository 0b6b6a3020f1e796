#!/usr/bin/env python3
"""Where the chat page's start-up time and bytes go, in headless Chromium with SmolLM2-135M-Instruct Q4_1.

For each built site (this tree, built now, and any --site LABEL=DIR built earlier, e.g. from the base commit), each
round opens the chat page in a fresh browser context (nothing cached), asks one question, waits until the service
worker holds the app and the model store the model, then opens the page again (everything cached) and asks again.
Rounds alternate between the sites, so the machine's noise hits them alike. For each visit it records, on the page's
clock (milliseconds since navigation):

- every message the chat worker posts (stage, ready, model progress, loaded), timed when the page receives it, and,
  where the worker sends one (stage events' `at`: its performance.timeOrigin + performance.now()), when the worker
  reached it; the page's own first streamed token;
- the chat worker's Resource Timing entries (when each file's fetch started and ended, read from the worker);
- the bytes of every response the page and its worker received before the model's request, and until the answer
  ended (all but the model: what the boot needs; the service worker's own precache is left out: it runs beside the
  boot), raw and as gzip -6 of the same file, which is what a static host that compresses every response would send.

    python3 benchmarks/boot_stages.py [--rounds 3] [--site before=/tmp/site-before] [--no-this] [--out docs/start.md]

Prints the tables (medians over the rounds) and writes them, with the raw rounds as JSON, to docs/start.md and
docs/start.json.
"""
from __future__ import annotations

import argparse
import contextlib
import gzip
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "wasm"))

from browser_site import CHROMIUM, CHROMIUM_ARGS, bounded, serve  # noqa: E402
import build_site  # noqa: E402
import deps  # noqa: E402

QUESTION = "What is the capital of France?"

# Timestamps, on the page's clock, of what the chat worker posts: installed before any page script runs.
RECORDER = """(() => {
  const log = (window.__pmBoot = { spawned: null, events: [], firstProgress: null, lastProgress: null, firstPrompt: null,
                                    promptDone: null, firstText: null });
  const Native = window.Worker;
  window.Worker = class extends Native {
    constructor(url, options) {
      super(url, options);
      if (!String(url).includes("chat-worker")) return;
      log.spawned = performance.now();
      this.addEventListener("message", ({ data }) => {
        if (!data || typeof data !== "object") return;
        const t = performance.now();
        if (data.type === "progress" && data.what === "model") {
          if (!log.firstProgress) log.firstProgress = t;
          log.lastProgress = t;
        } else if (data.type === "prompt") {
          if (!log.firstPrompt) log.firstPrompt = t;
          if (data.decoded === data.total && !log.promptDone) log.promptDone = t;
        } else if (data.type === "text") {
          if (!log.firstText) log.firstText = t;
        } else if (["stage", "ready", "loaded"].includes(data.type)) {
          log.events.push({ type: data.type, stage: data.stage || null, at: data.at == null ? null : data.at, t });
        }
      });
    }
  };
})();"""

# the order of the table's rows; a stage a build does not report stays empty
STAGE_ROWS = [
    ("spawned", "chat worker created by the page"),
    ("stage:worker", "worker script running"),
    ("stage:engine", "engine compiled and instantiated"),
    ("stage:python", "Pyodide loaded (loadPyodide)"),
    ("stage:packages", "packages loaded (numpy, jinja2, markupsafe, pocketmind)"),
    ("stage:glue", "glue imported"),
    ("model_request", "model request started (worker Resource Timing)"),
    ("stage:model", "model read into wasm memory"),
    ("loaded", "model loaded (ChatService ready)"),
    ("asked", "question sent by the page"),
    ("prompt_first", "first prompt batch reported"),
    ("prompt_done", "prompt read"),
    ("first_token", "first token shown"),
]


def gzip_size(path: Path, cache: dict) -> int:
    if path not in cache:
        with open(path, "rb") as f:
            cache[path] = len(gzip.compress(f.read(), compresslevel=6, mtime=0))
    return cache[path]


def visit(context, url: str, folder: Path, model_file: str, gz_cache: dict) -> dict:
    """Open the chat page, ask, and return its timeline and the bytes it received before the model request."""
    received: list[tuple[str, int]] = []  # before the model request
    later: list[tuple[str, int]] = []  # after it, until the answer ends (what the boot needs besides the model)
    state = {"model_started": False}

    def on_request(request):
        if request.url.endswith(model_file):
            state["model_started"] = True

    def on_finished(request):
        if request.service_worker is not None or request.url.endswith(model_file):
            return
        try:
            size = request.sizes()["responseBodySize"]  # -1: served by the service worker
        except Exception:
            return
        if size > 0:
            (later if state["model_started"] else received).append((request.url, size))

    context.on("request", on_request)
    context.on("requestfinished", on_finished)
    page = context.new_page()
    try:
        page.goto(url)
        bounded(page, "() => window.pocketmindChat.ready")
        page.evaluate("""(q) => { window.__firstText = new Promise((resolve) => {
            const watch = new MutationObserver(() => {
                const a = document.querySelector('.message.assistant');
                if (a && a.textContent) { watch.disconnect(); resolve(performance.now()); } });
            watch.observe(document.querySelector('#messages'), {subtree: true, childList: true, characterData: true}); });
            document.querySelector('#max-tokens').value = '8'; // the first token is what counts
            window.__pmBoot.asked = performance.now(); window.__answer = window.pocketmindChat.ask(q); }""", QUESTION)
        first_token = bounded(page, "() => window.__firstText")
        bounded(page, "() => window.__answer")
        log = page.evaluate("() => ({ ...window.__pmBoot, origin: performance.timeOrigin })")
        worker = next(w for w in page.workers if "chat-worker" in w.url)
        resources = worker.evaluate("""() => ({ origin: performance.timeOrigin,
            entries: performance.getEntriesByType('resource').map((e) => ({ name: e.name, start: e.startTime,
                end: e.responseEnd, transfer: e.transferSize })) })""")
        storage = page.evaluate("window.pocketmindChat.storage")
        # the next visit is "everything cached" only once the service worker holds the app
        bounded(page, """() => new Promise((resolve) => { const check = () =>
            window.pocketmindOffline.state.cached ? resolve(true) : setTimeout(check, 100); check(); })""")
    finally:
        context.remove_listener("request", on_request)
        context.remove_listener("requestfinished", on_finished)
        page.close()
    shift = resources["origin"] - log["origin"]  # worker clock -> page clock
    times = {"spawned": log["spawned"], "first_token": first_token,
             "model_progress_first": log["firstProgress"], "model_progress_last": log["lastProgress"],
             "asked": log.get("asked"), "prompt_first": log["firstPrompt"], "prompt_done": log["promptDone"],
             "text_first": log["firstText"]}
    for event in log["events"]:
        key = f"stage:{event['stage']}" if event["type"] == "stage" else event["type"]
        # the worker's own timestamp where it sends one, else when the page heard of it
        times[key] = event["at"] - log["origin"] if event["at"] is not None else event["t"]
    files = []
    for entry in resources["entries"]:
        path = urlsplit(entry["name"]).path.lstrip("/")
        files.append({"file": path, "start": entry["start"] + shift, "end": entry["end"] + shift,
                      "transfer": entry["transfer"]})
        if path.endswith(model_file) and "model_request" not in times:
            times["model_request"] = entry["start"] + shift
    def sizes(responses):
        per_file = []
        for request_url, size in responses:
            path = urlsplit(request_url).path.lstrip("/") or "index.html"
            local = folder / path
            per_file.append([path, size, min(size, gzip_size(local, gz_cache)) if local.is_file() else size])
        return sum(f[1] for f in per_file), sum(f[2] for f in per_file), per_file

    raw, gz, per_file = sizes(received)
    all_raw, all_gz, _ = sizes(received + later)
    return {"times": times, "bytes_raw": raw, "bytes_gzip": gz, "files_received": per_file, "resources": files,
            "boot_bytes_raw": all_raw, "boot_bytes_gzip": all_gz, "from_cache": storage["fromCache"]}


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def fmt_s(ms):
    return "" if ms is None else f"{ms / 1000:.2f}"


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> int:
    from playwright.sync_api import sync_playwright

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--site", action="append", default=[], metavar="LABEL=DIR",
                        help="a site built earlier (e.g. from the base commit), measured beside this tree's")
    parser.add_argument("--no-this", action="store_true", help="measure only the --site folders")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "start.md")
    args = parser.parse_args()

    model = deps.smollm2()
    sites: list[tuple[str, Path]] = []
    for spec in args.site:
        label, _, folder = spec.partition("=")
        sites.append((label, Path(folder)))
    with tempfile.TemporaryDirectory() as tmp:
        if not args.no_this:
            sites.append(("this tree", build_site.build_site(Path(tmp) / "site", [model])))
        runs: dict[str, dict[str, list]] = {label: {"cold": [], "warm": []} for label, _ in sites}
        loads = [load_average()]
        gz_cache: dict = {}
        with sync_playwright() as p, contextlib.ExitStack() as stack:
            urls = {label: stack.enter_context(serve(folder)) for label, folder in sites}
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            for r in range(args.rounds):
                for label, folder in sites:
                    context = browser.new_context()
                    context.add_init_script(RECORDER)
                    try:
                        for kind in ("cold", "warm"):
                            result = visit(context, urls[label], folder, model.name, gz_cache)
                            runs[label][kind].append(result)
                            t = result["times"]
                            print(f"round {r + 1} {label} {kind}: first token {fmt_s(t['first_token'])} s, "
                                  f"{result['bytes_raw'] / 1e6:.1f} MB raw / {result['bytes_gzip'] / 1e6:.1f} MB "
                                  f"gzip before the model request, model from cache {result['from_cache']}",
                                  flush=True)
                    finally:
                        context.close()
                loads.append(load_average())
                write(args.out, render(sites, runs, r + 1, loads), runs, r + 1, loads)  # each round: usable if cut
            browser.close()
    print("\n" + args.out.read_text())
    return 0


def write(out: Path, report: str, runs, rounds: int, loads) -> None:
    out.write_text(report)
    out.with_suffix(".json").write_text(json.dumps({"rounds": rounds, "load_average": loads, "runs": runs},
                                                   indent=1) + "\n")


def render(sites, runs, rounds, loads) -> str:
    labels = [label for label, _ in sites]
    cols = [(label, kind) for kind in ("cold", "warm") for label in labels]
    lines = [
        "# Start-up: where the chat page's first answer waits",
        "",
        f"`python3 benchmarks/boot_stages.py` on {time.strftime('%Y-%m-%d')}: headless Chromium (Debian), the chat "
        f"page with SmolLM2-135M-Instruct Q4_1 served from loopback with COOP/COEP, medians of {rounds} rounds "
        "(sites alternating). *cold*: a fresh browser context, nothing cached; *warm*: the same context once the "
        "service worker holds the app and the model store the model. Times are seconds since navigation, on the "
        "page's clock; worker stages use the worker's own timestamps where the build sends them. "
        f"Load average (1, 5, 15 min) before and after each round: {'; '.join(loads)} (a shared 2-core machine: "
        "compare columns of the same run, not runs).",
        "",
        "| stage (s since navigation) | " + " | ".join(f"{label}, {kind}" for label, kind in cols) + " |",
        "|---|" + "---:|" * len(cols),
    ]
    for key, name in STAGE_ROWS:
        cells = [fmt_s(median([run["times"].get(key) for run in runs[label][kind]])) for label, kind in cols]
        if any(cells):
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "Bytes the page and its worker received before the model request (cold visits; the service "
              "worker's precache of the whole app runs beside the boot and is not counted):", "",
              "| site | raw MB | gzip -6 MB | files | all but the model until the answer: raw MB | gzip -6 MB |",
              "|---|---:|---:|---:|---:|---:|"]
    for label in labels:
        cold = runs[label]["cold"]
        boot = [r for r in cold if "boot_bytes_raw" in r]
        lines.append(f"| {label} | {median([r['bytes_raw'] for r in cold]) / 1e6:.2f} | "
                     f"{median([r['bytes_gzip'] for r in cold]) / 1e6:.2f} | "
                     f"{median([len(r['files_received']) for r in cold]):.0f} | "
                     + (f"{median([r['boot_bytes_raw'] for r in boot]) / 1e6:.2f} | "
                        f"{median([r['boot_bytes_gzip'] for r in boot]) / 1e6:.2f} |" if boot else " | |"))
    lines += ["", "The largest files among them (last cold round; MB raw / gzip -6):", ""]
    for label in labels:
        biggest = sorted(runs[label]["cold"][-1]["files_received"], key=lambda f: -f[1])[:8]
        lines.append(f"- {label}: " + ", ".join(f"`{p}` {raw / 1e6:.2f} / {gz / 1e6:.2f}" for p, raw, gz in biggest))
    lines += ["", "When the chat worker's largest fetches ran (s since navigation, start-end; last round):", ""]
    for label in labels:
        for kind in ("cold", "warm"):
            spans = sorted((f for f in runs[label][kind][-1]["resources"]
                            if any(f["file"].endswith(x) for x in (".wasm", ".whl", ".zip", ".gguf", "lock.json"))),
                           key=lambda f: f["start"])
            lines.append(f"- {label}, {kind}: " + ", ".join(
                f"`{f['file'].rsplit('/', 1)[-1]}` {fmt_s(f['start'])}-{fmt_s(f['end'])}" for f in spans))
    if len(labels) >= 2:
        base = labels[0]
        lines.append("")
        for kind in ("cold", "warm"):
            first = {label: median([r["times"]["first_token"] for r in runs[label][kind]]) for label in labels}
            lines.append(f"First token, {kind}: " + ", ".join(f"{label} {first[label] / 1000:.2f} s" for label in labels)
                         + "; ratios to " + base + ": "
                         + ", ".join(f"{label} {first[label] / first[base]:.2f}" for label in labels[1:]) + ".")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
