"""A short speed test of a loaded model through the whole glue: prompt-processing and generation tokens/s.

One measuring loop for everything that measures the glue: the Benchmark page's worker (through
ChatService.start_bench, streamed like an answer, so it draws progress and can stop it), the chat worker's bench
request (ChatService.bench, for benchmarks/browser_chat.py) and benchmarks/wllama_compare.py's glue path.

What it runs is what an answer runs (generate.Generator: greedy sampling, the text stream, stop and abort checks
per token), on a prompt of exactly `n_prompt` tokens of a fixed English text (TEXT, repeated if need be), after
two warm-up rounds of the same shapes (the first decode of a batch grows memory and runs unoptimised wasm code).

    for event in run(generator, text_prompt(model, 64), 64):
        ...  # {"type": "progress", "phase": "warm-up" | "prompt" | "generate", "done", "total"} per prompt batch
             # and per token, with "quiet": True on the tokens not worth drawing (see PROGRESS_SECONDS), then:
             # {"type": "done", "pp_tps", "tg_tps", "n_prompt", "n_generated", "prompt_seconds",
             #  "generation_seconds", "finish_reason", "stopped"}

tg_tps counts the tokens decoded one at a time: the first generated token comes from the prompt's logits, so n
generated tokens cost n - 1 single-token decodes (and n samplings); tg_tps = (n_generated - 1) / generation_seconds,
as native llama.cpp loops and wllama's timings are read in benchmarks/wllama_compare.py. Greedy generation may end
early at an end-of-generation token: n_generated says how many tokens there were.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence

from .generate import Chunk, Done, Generator, Prefill
from .sampling import GREEDY

# The benchmark's prompt: plain prose that models continue rather than end (no question, no chat template).
TEXT = ("The history of the lighthouse begins with fires lit on hilltops to guide ships at night. Over the "
        "centuries these fires were raised on towers of stone, and later fitted with lamps, mirrors and great "
        "glass lenses that could throw a beam of light far out to sea. Keepers lived beside the towers with their "
        "families, trimming the wicks, polishing the brass and writing the weather into a log book every few hours. "
        "On the rocky coasts of the north, where storms could last for days, the keepers sometimes went weeks "
        "without seeing a visitor, and the supply boat was the most important event of the month.")
WARMUP_TOKENS = 8  # generated in each warm-up round, as the JS-only benchmarks do (wasm/pocketmind_api.js)
# Two rounds, as those do too: after one, V8's optimizing compiler has not caught up with the engine's hot code in a
# fresh page (the Benchmark page's first measured 64-token prompt at 2 threads ran at 156-194 tokens/s against
# 285-299 in the runs after it, in one page, by hand; with two rounds the first run matched the others).
WARMUP_ROUNDS = 2
# A token's progress event is quiet (ChatService.step hands the worker nothing to post for it) unless it is a phase's
# first or last token or this long has passed since the last one that was not: each event the Benchmark page draws
# takes CPU from the engine's threads (an event per token cost the page 15-29 % of its generation speed at 2 threads
# on a 2-core machine: docs/glue_overhead.md), and a progress bar needs a few a second. Every token still returns to
# the worker (an empty step), so a stop lands within a token.
PROGRESS_SECONDS = 0.25


def text_prompt(model, n_tokens: int, text: str = TEXT) -> list[int]:
    """The first `n_tokens` tokens of `text` as this model tokenizes it (with its BOS if it adds one), the text
    repeated as often as needed."""
    if isinstance(n_tokens, bool) or not isinstance(n_tokens, int) or n_tokens < 1:
        raise ValueError(f"the prompt needs a whole number of tokens >= 1, got {n_tokens!r}")
    tokens = [int(t) for t in model.tokenize(text)]
    more = [int(t) for t in model.tokenize(" " + text, add_special=False)]
    if not more:
        raise ValueError("the benchmark text gives no tokens with this model")
    while len(tokens) < n_tokens:
        tokens += more
    return tokens[:n_tokens]


def _check(n_gen: int, prompt: Sequence[int], n_ctx: int) -> None:
    if isinstance(n_gen, bool) or not isinstance(n_gen, int) or n_gen < 1:
        raise ValueError(f"the number of tokens to generate must be a whole number >= 1, got {n_gen!r}")
    if not prompt:
        raise ValueError("the prompt needs at least one token")
    if len(prompt) + n_gen > n_ctx:
        raise ValueError(f"{len(prompt)} prompt + {n_gen} generated tokens do not fit in the context of {n_ctx}")


def run(generator: Generator, prompt: Sequence[int], n_gen: int, abort: Callable[[], bool] | None = None,
        warmup: bool = True) -> Iterator[dict]:
    """Yield progress events, then one "done" event with the rates (see the module's docstring). `abort` is
    checked before each prompt batch and each token (the warm-up included); after an abort the done event has
    stopped True and the rates of what ran (0.0 where nothing did). The generator's KV cache is cleared before
    and after."""
    prompt = [int(t) for t in prompt]
    _check(n_gen, prompt, generator.ctx.n_ctx)
    aborted = abort or (lambda: False)
    n_warm = min(WARMUP_TOKENS, n_gen)
    # one generation each: (phase, tokens, the phase's tokens before it, the phase's tokens in all); the warm-up's
    # progress counts on through its rounds
    runs = [("warm-up", n_warm, r * n_warm, WARMUP_ROUNDS * n_warm) for r in range(WARMUP_ROUNDS)] if warmup else []
    runs.append(("measure", n_gen, 0, n_gen))
    done = None
    shown = -float("inf")  # when the last token's progress event that was not quiet was yielded

    def due(generated: int, total: int) -> bool:
        nonlocal shown
        now = time.perf_counter()
        if generated in (1, total) or now - shown >= PROGRESS_SECONDS:
            shown = now
            return True
        return False

    try:
        for phase, n, generated, total in runs:
            generator.reset()
            for event in generator.generate(prompt, params=GREEDY, max_tokens=n, abort=aborted, progress=True):
                if isinstance(event, Prefill):
                    if phase != "warm-up":
                        yield {"type": "progress", "phase": "prompt", "done": event.decoded, "total": event.total}
                elif isinstance(event, Chunk) and event.token is not None:
                    generated += 1
                    yield {"type": "progress", "phase": "generate" if phase == "measure" else phase,
                           "done": generated, "total": total, **({} if due(generated, total) else {"quiet": True})}
                elif isinstance(event, Done) and phase == "measure":
                    done = event
            if aborted():
                break
    finally:
        generator.reset()
    stopped = done is None or done.finish_reason == "abort"
    if done is None:  # stopped in the warm-up: nothing was measured
        yield {"type": "done", "pp_tps": 0.0, "tg_tps": 0.0, "n_prompt": len(prompt), "n_generated": 0,
               "prompt_seconds": 0.0, "generation_seconds": 0.0, "finish_reason": "abort", "stopped": True}
        return
    tg = (done.n_generated - 1) / done.generation_seconds if done.n_generated > 1 and done.generation_seconds else 0.0
    yield {"type": "done", "pp_tps": done.prompt_tokens_per_s, "tg_tps": tg,
           "n_prompt": len(prompt), "n_generated": done.n_generated, "prompt_seconds": done.prompt_seconds,
           "generation_seconds": done.generation_seconds, "finish_reason": done.finish_reason, "stopped": stopped}


def measure(generator: Generator, prompt: Sequence[int], n_gen: int, **kwargs) -> dict:
    """run() to the end: its done event."""
    for event in run(generator, prompt, n_gen, **kwargs):
        pass
    return event
