"""Scoring a fixed label set after a prompt: the answer is always one of the labels.

Each label is scored by the total log-probability of its tokens right after the prompt,
log p(label) = sum_j log p(t_j | prompt, t_1 .. t_{j-1}), read from the raw model logits (no sampling settings).
The prompt is decoded once per call and its KV entries are shared by every label: a label's positions are removed
after scoring it, and the next label is decoded after the same prompt. The prompt stays in the cache afterwards: a
caller that names the prompt's shared start (a task's instruction and examples) has it decoded once per run.

Tokens of a label: its text tokenized as plain text (no BOS, no special-token parsing), exactly as given. No space
is added in front: a chat template's answer starts right after "assistant\\n", where a model writes "positive",
not " positive". (SentencePiece tokenizers, llama.cpp's SPM, put their own word-start marker before any text;
that is the tokenizer's convention and is kept.) No end-of-turn token is scored after the label, so a label that
is the start of another ("yes" and "yes sir") scores at least as high as the longer one.

Backend-neutral: only Model/Context methods from engine.py are used.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .sampling import log_softmax


@dataclass(frozen=True)
class LabelScores:
    """The scores of one label set after one prompt, in the order the labels were given.

    probs: the softmax over the labels' total log-probabilities, i.e. the model's probability of each label given
    that its answer is one of them (a distribution over the label set, summing to 1). Totals, not per-token means,
    are what the probabilities come from: a longer label is less likely because each of its tokens must be chosen.
    mean_logprobs (total / number of tokens) is there for callers who want a length-normalised comparison.
    label: the most probable label; ties go to the label that comes first in the list.
    confidence: probs of that label.
    """

    labels: tuple[str, ...]
    logprobs: tuple[float, ...]  # total log-probability of each label's tokens after the prompt
    n_tokens: tuple[int, ...]  # tokens of each label
    probs: tuple[float, ...]
    label: str
    confidence: float

    @classmethod
    def from_logprobs(cls, labels: Sequence[str], logprobs: Sequence[float], n_tokens: Sequence[int]) -> LabelScores:
        totals = np.asarray(logprobs, dtype=np.float64)
        probs = np.exp(totals - totals.max())
        probs /= probs.sum()
        best = int(np.argmax(totals))  # np.argmax returns the first of equal maxima: the earlier label wins a tie
        return cls(tuple(labels), tuple(float(x) for x in totals), tuple(int(n) for n in n_tokens),
                   tuple(float(p) for p in probs), labels[best], float(probs[best]))

    @property
    def mean_logprobs(self) -> tuple[float, ...]:
        return tuple(lp / n for lp, n in zip(self.logprobs, self.n_tokens))


def label_tokens(model, labels: Sequence[str]) -> tuple[list[str], list[np.ndarray]]:
    """Check a label set and tokenize it (see the module's docstring): (the labels, their tokens). Raises ValueError
    naming the bad label."""
    if isinstance(labels, (str, bytes)):
        raise ValueError("labels must be a list of strings, not one string")
    labels = list(labels)
    if not labels:
        raise ValueError("the label set is empty: give at least one label")
    seen: set[str] = set()
    tokens = []
    for i, label in enumerate(labels):
        if not isinstance(label, str):
            raise ValueError(f"label {i} is not a string: {label!r}")
        if label == "":
            raise ValueError(f"label {i} is an empty string")
        if label in seen:
            raise ValueError(f"the label {label!r} appears more than once")
        seen.add(label)
        ids = model.tokenize(label, add_special=False, parse_special=False)
        if ids.size == 0:
            raise ValueError(f"the label {label!r} has no tokens")
        tokens.append(ids)
    return labels, tokens


def score_labels(ctx, prompt_tokens: Sequence[int] | np.ndarray, labels: Sequence[str], *,
                 model=None, shared: int = 0) -> LabelScores:
    """Score every label after the prompt (see the module's docstring) and pick one.

    `model` tokenizes the labels (default: the context's model). `shared`: how many leading prompt tokens are the
    same for many calls (decoded once and kept; see below). Afterwards the context's KV cache holds exactly the
    prompt. Raises ValueError for a bad label set (empty, a non-string or empty label, a
    duplicate) or when the prompt plus a label does not fit in the context (naming the label).
    """
    model = model or ctx.model
    prompt = np.asarray(prompt_tokens, dtype=np.int64).ravel()
    if prompt.size == 0:
        raise ValueError("the prompt needs at least one token")
    labels, tokens = label_tokens(model, labels)
    n_prompt = int(prompt.size)
    for label, ids in zip(labels, tokens):
        if n_prompt + ids.size > ctx.n_ctx:
            raise ValueError(f"the label {label!r} ({ids.size} tokens) does not fit after the prompt "
                             f"({n_prompt} tokens) in the context of {ctx.n_ctx} tokens")

    # The first `shared` tokens (a task's instruction and examples: the same for every item) are decoded as a batch
    # of their own, or kept from the last call when the cache holds them. Always the same split, because llama.cpp's
    # logits depend on how a prompt is cut into batches (SmolLM2: up to 0.6): so an item's scores never depend on
    # which item came before it.
    shared = min(max(int(shared), 0), n_prompt - 1)
    keep = shared if shared and ctx.cached_prefix(prompt) >= shared else 0
    ctx.kv_remove(keep)
    if shared and not keep:
        ctx.decode(prompt[:shared], pos=0)
    ctx.decode(prompt[shared:], pos=shared)
    first = log_softmax(ctx.logits())  # a copy: the next decode overwrites the logits; every label needs it
    totals = []
    try:
        for ids in tokens:
            total = float(first[ids[0]])
            if ids.size > 1:
                # the last token's own logits predict nothing we score, so it is not decoded
                ctx.decode(ids[:-1], pos=n_prompt, all_logits=True)
                for j in range(1, ids.size):
                    total += float(log_softmax(ctx.logits(j - 1))[ids[j]])
                ctx.kv_remove(n_prompt)
            totals.append(total)
    except BaseException:
        ctx.kv_remove(n_prompt)  # leave the shared prompt, whatever part of a label reached the cache
        raise
    return LabelScores.from_logprobs(labels, totals, [ids.size for ids in tokens])
