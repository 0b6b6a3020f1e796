#!/usr/bin/env python3
"""How often the chat page (wasm-mt in headless Chromium, the Python glue in Pyodide) and the CPython glue (native
library) give the same greedy answer, for SmolLM2-135M-Instruct Q4_1 and Gemma 3 270M Q4_K_M, on PROMPTS below.

Both sides run the same ChatService with temperature 0 and repeat penalty 1 (no penalty: greedy decoding alone),
the page's default system prompt, MAX_TOKENS tokens, one new chat per prompt. For each answer that differs, the
first differing token, and the top-2 logit gap there: the native library's and the wasm module's (wasm-st under
Node, same weights and KV cache type as the page), both recomputed on prompt + common prefix in one batch.
A gap well under the logit noise between the builds (tests/test_quant_parity.py) is a near-tie.

    python3 benchmarks/greedy_agreement.py [--models smollm2,gemma] [--max-tokens 48] [--out docs/parity.md]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
for sub in ("py", "wasm", "tests", "benchmarks"):
    sys.path.insert(0, str(REPO / sub))

import build as wasm_build  # noqa: E402
import deps  # noqa: E402
from browser_site import CHROMIUM, CHROMIUM_ARGS, bounded, served_site  # noqa: E402
from pocketmind import Model  # noqa: E402
from pocketmind.chat_service import ChatService  # noqa: E402
from pocketmind.native import backend  # noqa: E402

MAX_TOKENS = 48
# Varied on purpose: facts, arithmetic, instructions, short stories, code, other languages, open questions.
PROMPTS = [
    "What is the capital of France?",
    "Who wrote Romeo and Juliet?",
    "How many legs does a spider have?",
    "What is the boiling point of water in Celsius?",
    "Name the largest planet in our solar system.",
    "Why is the sky blue?",
    "What is 17 plus 25?",
    "What is 12 times 11?",
    "If I have 3 apples and eat one, how many are left?",
    "Is 91 a prime number?",
    "Convert 5 kilometres to metres.",
    "Give me three tips for sleeping better.",
    "List the days of the week in order.",
    "Explain photosynthesis in one sentence.",
    "Write a polite email declining a meeting invitation.",
    "Summarize the story of Cinderella in two sentences.",
    "Write a haiku about the ocean.",
    "Tell me a short story about a robot who learns to paint.",
    "Write a limerick about a cat.",
    "Describe a sunset to someone who has never seen one.",
    "Write a Python function that reverses a string.",
    "What does the SQL statement SELECT COUNT(*) FROM users do?",
    "Write a JavaScript function that adds two numbers.",
    "How do I make a list in HTML?",
    "Explain what a for loop is.",
    "Traduis en anglais : « Le chat dort sur le canapé. »",
    "¿Cuál es la capital de España?",
    "Wie viele Tage hat eine Woche?",
    "Translate 'good morning' into Italian.",
    "What is the meaning of the Japanese word 'arigatou'?",
    "What are the benefits of regular exercise?",
    "Should I learn Python or JavaScript first?",
]
MODELS = {"smollm2": ("SmolLM2-135M-Instruct Q4_1", deps.smollm2), "gemma": ("Gemma 3 270M Q4_K_M", deps.gemma3_270m)}
NATIVE_LIB = REPO / "build" / "native" / "libpocketmind.so"


def page_answers(url: str, model_file: str, max_tokens: int) -> tuple[str, int, list[dict]]:
    """The chat page's answers: (system prompt, threads, [done events])."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page()
        page.goto(url)
        bounded(page, "() => window.pocketmindChat.ready")
        bounded(page, "(f) => window.pocketmindChat.use(f)", f"models/{model_file}")
        page.click("summary:has-text('Settings')")
        page.fill("#temperature", "0")
        page.fill("#repeat-penalty", "1")
        page.fill("#max-tokens", str(max_tokens))
        system = page.input_value("#system").strip()
        threads = page.evaluate("window.pocketmindChat.engine.threads")
        answers = []
        for i, prompt in enumerate(PROMPTS):
            page.evaluate("() => window.pocketmindChat.newChat()")
            answers.append(bounded(page, "(q) => window.pocketmindChat.ask(q)", prompt))
            print(f"  page {i + 1}/{len(PROMPTS)}: {len(answers[-1]['tokens'])} tokens", flush=True)
        browser.close()
    return system, threads, answers


def messages_for(system: str, prompt: str) -> list[dict]:
    return ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]


def native_answers(path: Path, system: str, max_tokens: int) -> list[dict]:
    """The CPython glue's answers, one service and one new chat per prompt in order, as the page asks them."""
    with Model.from_file(path, backend(str(NATIVE_LIB))) as model:
        service = ChatService(model, n_ctx=2048)
        out = []
        for prompt in PROMPTS:
            request = {"messages": messages_for(system, prompt), "max_tokens": max_tokens,
                       "settings": {"temperature": 0, "top_p": 0.95, "repeat_penalty": 1.0}}
            out.append(service.answer(json.dumps(request))["done"])
        return out


def top2(logits: np.ndarray) -> tuple[int, int, float]:
    order = np.argsort(logits)[::-1][:2]
    return int(order[0]), int(order[1]), float(logits[order[0]] - logits[order[1]])


def divergence(path: Path, system: str, prompt: str, native_tokens: list[int], page_tokens: list[int],
               tmp: Path) -> dict:
    """Where two answers part, and the top-2 gaps of both builds' logits there."""
    k = next((i for i, (a, b) in enumerate(zip(native_tokens, page_tokens)) if a != b),
             min(len(native_tokens), len(page_tokens)))
    with Model.from_file(path, backend(str(NATIVE_LIB))) as model:
        service = ChatService(model, n_ctx=2048)
        tokens = [int(t) for t in service.session.prompt_tokens(messages_for(system, prompt))] + native_tokens[:k]
        with model.context(n_ctx=2048) as ctx:
            ctx.decode(tokens)
            native_logits = ctx.logits().copy()
        text = lambda ts: model.detokenize(ts).decode("utf-8", errors="replace")  # noqa: E731
        prefix = text(native_tokens[:k])
        native_next = text(native_tokens[k:k + 1]) if k < len(native_tokens) else "(end)"
        page_next = text(page_tokens[k:k + 1]) if k < len(page_tokens) else "(end)"
    out, job = tmp / "last.bin", tmp / "job.json"
    job.write_text(json.dumps({"module": str(REPO / "build" / "wasm-st" / "pocketmind-st.js"), "model": str(path),
                               "n_ctx": 2048, "tasks": [{"op": "logits", "tokens": tokens, "out": str(out),
                                                         "last_only": True}]}))
    subprocess.run(["node", "--no-experimental-fetch", str(REPO / "wasm" / "run_node.cjs"), str(job)],
                   capture_output=True, text=True, check=True, timeout=600)
    wasm_logits = np.fromfile(out, dtype=np.float32)
    n1, n2, n_gap = top2(native_logits)
    w1, w2, w_gap = top2(wasm_logits)
    return {"index": k, "prefix": prefix, "native_next": native_next, "page_next": page_next,
            "native_top2": [n1, n2], "native_gap": n_gap, "wasm_top2": [w1, w2], "wasm_gap": w_gap,
            "max_abs_diff": float(np.abs(native_logits - wasm_logits).max())}


def markdown(results: dict) -> str:
    """The report's tables: per model, the count, then each differing answer with where and how close it was."""
    out = []
    for key, r in results.items():
        rows = r["rows"]
        same = sum(x["same"] for x in rows)
        differ = [x for x in rows if not x["same"]]
        out.append(f"### {r['name']}: {same} of {len(rows)} answers identical\n")
        out.append(f"Page: wasm-mt, {r['threads']} threads; system prompt {r['system']!r}.")
        if differ:
            gaps = sorted(x["native_gap"] for x in differ)
            noise = sorted(x["max_abs_diff"] for x in differ)
            same_top = sum(x["wasm_top2"][0] == x["native_top2"][1] and x["wasm_top2"][1] == x["native_top2"][0]
                           for x in differ)
            below = sum(x["native_gap"] < x["max_abs_diff"] for x in differ)
            out.append(f"Where they part, native's top-2 gap is {gaps[0]:.3f} to {gaps[-1]:.3f} (median "
                       f"{gaps[len(gaps) // 2]:.3f}); the max |logit difference| between the builds at that step is "
                       f"{noise[0]:.2f} to {noise[-1]:.2f}, larger than native's top-2 gap in {below} of "
                       f"{len(differ)}. In {same_top} of {len(differ)} the recomputed wasm logits rank the same two "
                       f"tokens the other way round.\n")
            out.append("| prompt | identical tokens | native next | page next | native top-2 gap | wasm top-2 gap | "
                       "max abs logit diff |\n|---|---:|---|---|---:|---:|---:|")
            for x in differ:
                out.append(f"| {x['prompt']} | {x['index']} | {x['native_next']!r} | {x['page_next']!r} | "
                           f"{x['native_gap']:.3f} | {x['wasm_gap']:.3f} | {x['max_abs_diff']:.2f} |")
        out.append("")
    return "\n".join(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="smollm2,gemma")
    parser.add_argument("--max-tokens", type=int, default=MAX_TOKENS)
    parser.add_argument("--json", type=Path, help="write the raw results here")
    parser.add_argument("--limit", type=int, help="only the first N prompts (a quick check of this script)")
    parser.add_argument("--from-json", type=Path, help="print the tables of a saved --json run, run nothing")
    args = parser.parse_args()
    if args.from_json:
        print(markdown(json.loads(args.from_json.read_text())))
        return 0
    if args.limit:
        del PROMPTS[args.limit:]
    for variant in ("native", "wasm-st", "wasm-mt"):
        wasm_build.build(variant)
    keys = args.models.split(",")
    paths = {key: MODELS[key][1]() for key in keys}
    results = {}
    with served_site(list(paths.values())) as url, tempfile.TemporaryDirectory() as tmp:
        for key, path in paths.items():
            t0 = time.time()
            print(f"{MODELS[key][0]}: the chat page", flush=True)
            system, threads, page = page_answers(url, path.name, args.max_tokens)
            print(f"{MODELS[key][0]}: the CPython glue", flush=True)
            native = native_answers(path, system, args.max_tokens)
            rows = []
            for prompt, n, w in zip(PROMPTS, native, page):
                row = {"prompt": prompt, "same": n["tokens"] == w["tokens"], "native_text": n["text"],
                       "page_text": w["text"], "n_native": len(n["tokens"]), "n_page": len(w["tokens"])}
                if not row["same"]:
                    row.update(divergence(path, system, prompt, n["tokens"], w["tokens"], Path(tmp)))
                rows.append(row)
            results[key] = {"name": MODELS[key][0], "system": system, "threads": threads, "rows": rows,
                            "seconds": time.time() - t0}
            same = sum(r["same"] for r in rows)
            print(f"{MODELS[key][0]}: {same} of {len(rows)} answers identical ({time.time() - t0:.0f} s)", flush=True)
            for r in rows:
                if not r["same"]:
                    print(f"  differs at token {r['index']}: native gap {r['native_gap']:.3f}, wasm gap "
                          f"{r['wasm_gap']:.3f}, max |diff| {r['max_abs_diff']:.3f}: {r['prompt']!r}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, ensure_ascii=False) + "\n")
    print(markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
