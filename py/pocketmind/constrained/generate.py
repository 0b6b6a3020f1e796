"""generate_json: sampling under the schema's masks, so the output always parses and validates.

Each step the logits of tokens the automaton refuses, or after which the shortest completion would take more
tokens than max_tokens leaves, are set to -inf on a copy, and the usual Sampler picks from the rest. That count
(vocab.py) needs a token for every byte a shortest completion may hold: a single-byte token for each is checked
up front. Generation stops as soon as the top-level value is complete; only a value that could still go on (a
top-level number, or an enum where one value is the start of another) ends by an end-of-generation token, or at
max_tokens. Control tokens are never allowed otherwise.
"""
from __future__ import annotations

import json
import time
from collections.abc import Generator as Steps
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..generate import Generator
from ..sampling import Sampler, SamplingParams
from . import automaton as fsm
from .schema import Node
from .vocab import token_table


@dataclass(frozen=True)
class JsonStats:
    n_prompt: int
    n_reused: int  # prompt tokens already in the KV cache
    n_generated: int
    finish_reason: str  # "complete" (the value closed), "eog", or "length" (max_tokens, completed in time)
    prompt_seconds: float
    generation_seconds: float
    mask_seconds: float  # of generation_seconds: building and applying masks
    mask_builds: int  # cost arrays built (cache misses)

    @property
    def generation_tokens_per_s(self) -> float:
        return self.n_generated / self.generation_seconds if self.generation_seconds > 0 else 0.0


def _needed_bytes(node: Node, out: set[int]) -> None:
    """Every byte a shortest completion may have to write for this schema."""
    out.update(b'{}[]",:-0123456789.eE' + b'/bfnrt\\' + bytes(range(0x80, 0xC0)))
    if node.kind == "object":
        for name in node.names:
            out.update(name)
        for value in node.values:
            _needed_bytes(value, out)
    elif node.kind == "array":
        _needed_bytes(node.items, out)
    elif node.kind == "literal":
        for option in node.options:
            out.update(option)


def generate_json(ctx, prompt_tokens: Sequence[int] | np.ndarray, schema: dict[str, Any],
                  params: SamplingParams | None = None, max_tokens: int = 256) -> tuple[Any, str, JsonStats]:
    """Generate one JSON value for `schema` after the prompt: (the value, its text, stats).

    ctx: a Context, or a Generator (its KV cache is reused across calls, like Generator.generate).
    Raises SchemaError for schemas outside the subset, ValueError when max_tokens (or the context) cannot hold
    even the shortest valid value.
    """
    return run_to_end(json_steps(ctx, prompt_tokens, schema, params, max_tokens))


def run_to_end(steps: Steps[Any, None, Any]) -> Any:
    """What a generator of steps returns, once run to its end."""
    while True:
        try:
            next(steps)
        except StopIteration as end:
            return end.value


def json_steps(ctx, prompt_tokens: Sequence[int] | np.ndarray, schema: dict[str, Any],
               params: SamplingParams | None = None, max_tokens: int = 256) -> Steps[int, None, tuple]:
    """generate_json in steps, so a caller can yield to its event loop or stop between them: yields the number of
    tokens generated so far after each prompt batch and each generated token, and returns what generate_json
    returns. Closing it between steps leaves the context usable (every decode is complete)."""
    gen = ctx if isinstance(ctx, Generator) else Generator(ctx)
    table = token_table(gen.model)
    masker = table.masker(schema)
    missing = _collect(masker.root) - table.single_bytes
    if missing:
        raise ValueError(f"this vocabulary has no single-byte token for {sorted(missing)}: the token budget "
                         "cannot be guaranteed")
    prompt = [int(t) for t in np.asarray(prompt_tokens, dtype=np.int64).ravel()]
    if not prompt:
        raise ValueError("the prompt needs at least one token")
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, (int, np.integer)) or max_tokens < 0:
        raise ValueError(f"max_tokens must be a non-negative integer, got {max_tokens!r}")
    state = masker.start
    shortest = masker.cost(state)
    if shortest > max_tokens:
        raise ValueError(f"max_tokens={max_tokens} is too small: the shortest valid value takes {shortest} tokens")
    if len(prompt) + shortest > gen.ctx.n_ctx:
        raise ValueError(f"the prompt ({len(prompt)} tokens) leaves no room for a value in the context of "
                         f"{gen.ctx.n_ctx}")
    max_tokens = min(max_tokens, gen.ctx.n_ctx - len(prompt))

    t0 = time.perf_counter()
    reused = gen._reuse_prefix(prompt)
    step = max(1, gen.ctx.n_batch)
    for i in range(reused, len(prompt), step):
        gen._decode(prompt[i:i + step])
        yield 0
    t1 = time.perf_counter()

    sampler = Sampler(params or SamplingParams())
    history = list(prompt)
    out = bytearray()
    generated: list[int] = []
    reason = "length"
    mask_seconds, misses = 0.0, masker.misses
    eog = table.eog
    while state and len(generated) < max_tokens:
        tm = time.perf_counter()
        allowed = masker.costs(state) <= max_tokens - len(generated) - 1
        accepting = masker.cost(state) == 0
        if accepting and not allowed.any():
            reason = "complete"  # a finished value that nothing may extend
            break
        if accepting:
            allowed[eog] = True
        masked = np.where(allowed, gen.ctx.logits(), np.float32(-np.inf))
        mask_seconds += time.perf_counter() - tm
        token = sampler.sample(masked, history)
        if accepting and token in eog:
            reason = "eog"
            break
        generated.append(token)
        history.append(token)
        data = table.tokens[token]
        out += data
        state = fsm.walk(state, data)
        if state is None:  # cannot happen: the mask allowed only accepted tokens
            raise RuntimeError(f"constrained generation broke its own automaton after {bytes(out)!r}")
        if not state:
            reason = "complete"
        elif len(generated) < max_tokens:
            gen._decode([token])
        yield len(generated)
    text = out.decode("utf-8")
    value = json.loads(text)
    t2 = time.perf_counter()
    return value, text, JsonStats(len(prompt), reused, len(generated), reason, t1 - t0, t2 - t1, mask_seconds,
                                  masker.misses - misses)


def _collect(node: Node) -> set[int]:
    out: set[int] = set()
    _needed_bytes(node, out)
    return out
