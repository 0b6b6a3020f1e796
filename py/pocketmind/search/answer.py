"""Answers from passages: the chat prompt that numbers the passages [1]..[k] and asks the model to cite them, fitted
to a token budget (the last passage that does not fit whole is cut at a word, the rest are left out, and the result
says how many), and the passage numbers an answer cites.

The token count comes from a callable (messages -> number of prompt tokens), so the fitting is the same under any
model and testable without one; the search service passes the chat model's own template and tokenizer.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from . import SearchError
from .chunk import Chunk

SYSTEM = ("Answer the question using only the numbered passages. After each fact, cite the passage it comes from "
          "by its number in square brackets, like [1]. If the passages do not contain the answer, say so.")
# Two worked examples before the real question: without them SmolLM2-135M-Instruct almost never writes [n] (1 right
# citation in 7 questions of a hand-written corpus, 5 answers with the fact); with them, 5 right citations in 7
# (4 answers with the fact). Measured with tests' corpus in docs/embeddings.md ("Answers from the passages").
EXAMPLE_PASSAGES = "[1] Cats sleep about fifteen hours a day.\n\n[2] The library closes at eight in the evening."
EXAMPLES = (("How long do cats sleep?", "Cats sleep about fifteen hours a day [1]."),
            ("When does the library close?", "The library closes at eight in the evening [2]."))
MIN_TRIMMED_CHARS = 120  # a cut passage shorter than this is left out instead: too little to answer from

_CITATION = re.compile(r"\[\s*(\d+(?:\s*[,;]\s*\d+)*)\s*\]")


@dataclass(frozen=True)
class Passage:
    number: int  # 1-based, as the prompt shows it
    chunk: Chunk
    text: str  # what the prompt holds: the chunk's text, or its start when it was trimmed to fit
    trimmed: bool = False

    def to_json(self) -> dict:
        return {"number": self.number, "source": self.chunk.source, "start": self.chunk.start,
                "end": self.chunk.start + len(self.text), "text": self.text, "trimmed": self.trimmed}


@dataclass(frozen=True)
class AnswerPrompt:
    messages: list[dict]
    passages: list[Passage]  # the ones in the prompt, numbered 1..len
    n_trimmed: int  # passages cut to fit (0 or 1)
    n_left_out: int  # passages that did not fit at all
    n_tokens: int


def _ask(body: str, question: str) -> dict:
    return {"role": "user", "content": f"Passages:\n\n{body}\n\nQuestion: {question}"}


def messages_for(question: str, passages: Sequence[Passage]) -> list[dict]:
    """The chat: the instruction, the worked examples, then the passages numbered [1].. and the question."""
    messages = [{"role": "system", "content": SYSTEM}]
    for example_question, example_answer in EXAMPLES:
        messages += [_ask(EXAMPLE_PASSAGES, example_question), {"role": "assistant", "content": example_answer}]
    return messages + [_ask("\n\n".join(f"[{p.number}] {p.text}" for p in passages), question)]


def fit_prompt(question: str, chunks: Sequence[Chunk], count_tokens: Callable[[list[dict]], int],
               budget: int) -> AnswerPrompt:
    """The prompt with as many of `chunks` (best first) as fit in `budget` prompt tokens: whole passages while
    they fit, then the next one cut at a word to fit (when at least MIN_TRIMMED_CHARS of it do), the rest left
    out. Raises SearchError when the question alone does not fit."""
    question = question.strip() if isinstance(question, str) else ""
    if not question:
        raise SearchError("the question is empty")
    n_question = count_tokens(messages_for(question, []))
    if n_question > budget:
        raise SearchError(f"the question alone takes {n_question} tokens, more than the {budget} the chat model has "
                          "for a prompt; shorten it")
    kept: list[Passage] = []
    n_tokens, trimmed = n_question, 0
    for i, chunk in enumerate(chunks):
        whole = Passage(len(kept) + 1, chunk, chunk.text)
        n = count_tokens(messages_for(question, [*kept, whole]))
        if n <= budget:
            kept.append(whole)
            n_tokens = n
            continue
        cut = _longest_prefix_that_fits(question, kept, chunk, count_tokens, budget)
        if cut is not None:
            kept.append(cut[0])
            n_tokens, trimmed = cut[1], 1
        return AnswerPrompt(messages_for(question, kept), kept, trimmed, len(chunks) - i - trimmed, n_tokens)
    return AnswerPrompt(messages_for(question, kept), kept, 0, 0, n_tokens)


def _longest_prefix_that_fits(question, kept, chunk, count_tokens, budget) -> tuple[Passage, int] | None:
    """The longest start of chunk.text, cut at whitespace, that fits (binary search over the cut points)."""
    text = chunk.text
    cuts = [m.start() for m in re.finditer(r"\s+", text) if m.start() >= MIN_TRIMMED_CHARS]
    best, lo, hi = None, 0, len(cuts) - 1
    while lo <= hi:
        mid = (lo + hi) // 2
        passage = Passage(len(kept) + 1, chunk, text[:cuts[mid]], trimmed=True)
        n = count_tokens(messages_for(question, [*kept, passage]))
        if n <= budget:
            best, lo = (passage, n), mid + 1
        else:
            hi = mid - 1
    return best


def citations(answer: str, n_passages: int) -> list[int]:
    """The passage numbers an answer cites ([2], [1, 3], [1; 2]), in order of first mention; numbers that name
    no passage are ignored."""
    found: list[int] = []
    for match in _CITATION.finditer(answer):
        for part in re.split(r"\s*[,;]\s*", match.group(1)):
            n = int(part)
            if 1 <= n <= n_passages and n not in found:
                found.append(n)
    return found
