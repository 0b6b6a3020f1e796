"""The generation loop over one Context: KV-cache reuse, sampling, UTF-8-safe streaming, stop strings, abort.

Backend-neutral: only Model/Context methods from engine.py are used.
"""
from __future__ import annotations

import codecs
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from .engine import common_prefix
from .sampling import Sampler, SamplingParams, log_softmax

if TYPE_CHECKING:
    from .chat_template import ChatTemplate

FINISH_REASONS = ("stop", "eog", "length", "abort")


@dataclass(frozen=True)
class TokenLogprob:
    """log p(token) under the raw model logits, and the `top` most likely (token, logprob) pairs."""

    token: int
    logprob: float
    top: tuple[tuple[int, float], ...]


@dataclass(frozen=True)
class Chunk:
    """One step of the stream: text now safe to show (may be empty while held back), the token sampled
    (None for the final flush of held-back text) and its log-probabilities when asked for."""

    text: str
    token: int | None
    logprob: TokenLogprob | None = None


@dataclass(frozen=True)
class Prefill:
    """Progress through the prompt (only with generate(progress=True)), after each batch: `decoded` of the `total`
    prompt tokens that were not already in the KV cache. Between these events the consumer may stop (abort)."""

    decoded: int
    total: int


@dataclass(frozen=True)
class Done:
    """The last event: why generation ended, everything it produced, and how fast."""

    finish_reason: str  # one of FINISH_REASONS
    text: str  # the concatenation of every Chunk's text
    tokens: tuple[int, ...]  # generated tokens (the end-of-generation token is not included)
    stop: str | None  # the stop string that ended it
    n_prompt: int
    n_reused: int  # prompt tokens already in the KV cache
    n_prompt_decoded: int  # prompt tokens decoded now (may be fewer than the rest on abort)
    prompt_seconds: float
    generation_seconds: float
    n_dropped: int = 0  # chat messages left out so the chat fits in the context (ChatSession)

    @property
    def n_generated(self) -> int:
        return len(self.tokens)

    @property
    def prompt_tokens_per_s(self) -> float:
        return self.n_prompt_decoded / self.prompt_seconds if self.prompt_seconds > 0 else 0.0

    @property
    def generation_tokens_per_s(self) -> float:
        return self.n_generated / self.generation_seconds if self.generation_seconds > 0 else 0.0


class TextStream:
    """Bytes in, displayable text out: never half a UTF-8 character, never a stop string or what follows it,
    and text that could still begin a stop string is held back until it cannot."""

    def __init__(self, stop: Sequence[str] = ()):
        self.stop = tuple(stop)
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")  # holds incomplete characters
        self._pending = ""
        self.text = ""  # everything released so far
        self.stopped_by: str | None = None

    def push(self, data: bytes, final: bool = False) -> str:
        """Add bytes; return the text that can be shown now."""
        if self.stopped_by is not None:
            return ""
        self._pending += self._decoder.decode(data, final)
        # held-back text is kept whenever it could start a stop string, so a match can only begin in _pending
        hits = [(i, s) for s in self.stop if (i := self._pending.find(s)) >= 0]
        if hits:
            cut, self.stopped_by = min(hits)
            out, self._pending = self._pending[:cut], ""
        else:
            cut = len(self._pending) - (0 if final else self._held_back())
            out, self._pending = self._pending[:cut], self._pending[cut:]
        self.text += out
        return out

    def finish(self) -> str:
        """Flush at the end: incomplete bytes become U+FFFD, held-back text is released."""
        return self.push(b"", final=True)

    def _held_back(self) -> int:
        """Length of the longest end of _pending that is a proper start of some stop string."""
        best = 0
        for s in self.stop:
            for n in range(min(len(s) - 1, len(self._pending)), best, -1):
                if self._pending.endswith(s[:n]):
                    best = n
                    break
        return best


def _abort_check(abort: Any) -> Callable[[], bool]:
    if abort is None:
        return lambda: False
    if hasattr(abort, "is_set"):  # threading.Event and look-alikes
        return abort.is_set
    if callable(abort):
        return lambda: bool(abort())
    raise ValueError("abort must be None, a callable returning bool, or an object with is_set() (threading.Event)")


def token_logprob(logits: np.ndarray, token: int, top: int) -> TokenLogprob:
    lp = log_softmax(logits)
    top = min(top, lp.size)
    best = np.argpartition(-lp, top - 1)[:top] if top > 0 else np.array([], dtype=np.int64)
    best = best[np.argsort(-lp[best], kind="stable")]
    return TokenLogprob(int(token), float(lp[token]), tuple((int(t), float(lp[t])) for t in best))


class Generator:
    """Owns one Context and remembers which tokens its KV cache holds, so a new prompt decodes only what differs."""

    def __init__(self, ctx):
        self.ctx = ctx
        self.model = ctx.model
        self.tokens: list[int] = []  # tokens at positions 0..len-1 of the KV cache
        self.ctx.kv_clear()

    def reset(self) -> None:
        self.ctx.kv_clear()
        self.tokens = []

    def _decode(self, tokens: Sequence[int]) -> None:
        try:
            self.ctx.decode(tokens, pos=len(self.tokens))
        except BaseException:
            self._resync()
            raise
        self.tokens.extend(int(t) for t in tokens)

    def _resync(self) -> None:
        """After a failed decode, drop whatever part of it reached the cache."""
        try:
            self.ctx.kv_remove(len(self.tokens))
        except Exception:
            self.reset()

    def _reuse_prefix(self, prompt: list[int]) -> int:
        """Keep the longest common prefix of the cache and the prompt; returns how many prompt tokens it holds."""
        if self.ctx.n_past != len(self.tokens):  # someone else used the context: trust nothing
            self.reset()
        keep = min(common_prefix(self.tokens, prompt), len(prompt) - 1)  # the last prompt token is always decoded: we need its logits
        if keep < len(self.tokens):
            self.ctx.kv_remove(keep)
            del self.tokens[keep:]
        return keep

    def generate(self, prompt_tokens: Sequence[int] | np.ndarray, params: SamplingParams | None = None,
                 max_tokens: int | None = 256, stop: str | Sequence[str] = (), abort: Any = None,
                 logprobs: int = 0, progress: bool = False) -> Iterator[Prefill | Chunk | Done]:
        """Yield a Chunk per sampled token (plus one for a final flush), then a Done.

        max_tokens None generates until the context is full; abort is a callable or a threading.Event, checked
        before each prompt batch (n_batch tokens) and each token; logprobs=k adds the chosen token's log-probability
        and the k most likely tokens; progress=True also yields a Prefill after each prompt batch, so a consumer
        that can only act between events (the page's worker) can stop a long prompt.
        """
        prompt = [int(t) for t in np.asarray(prompt_tokens, dtype=np.int64).ravel()]
        stops = [stop] if isinstance(stop, str) else list(stop)
        if not prompt:
            raise ValueError("the prompt needs at least one token")
        if len(prompt) > self.ctx.n_ctx:
            raise ValueError(f"the prompt has {len(prompt)} tokens, more than the context of {self.ctx.n_ctx}")
        if max_tokens is not None and (isinstance(max_tokens, bool) or int(max_tokens) != max_tokens
                                       or max_tokens < 0):
            raise ValueError(f"max_tokens must be a non-negative integer or None, got {max_tokens!r}")
        if not all(isinstance(s, str) and s for s in stops):
            raise ValueError("stop strings must be non-empty strings")
        if isinstance(logprobs, bool) or int(logprobs) != logprobs or logprobs < 0:
            raise ValueError(f"logprobs must be a non-negative integer, got {logprobs!r}")
        return self._run(prompt, params or SamplingParams(), max_tokens, stops, _abort_check(abort), int(logprobs),
                         progress)

    def _run(self, prompt, params, max_tokens, stops, aborted, logprobs, progress) -> Iterator[Prefill | Chunk | Done]:
        reused = self._reuse_prefix(prompt)
        decoded, completed, prompt_seconds = 0, True, 0.0
        step = max(1, self.ctx.n_batch)
        for start in range(reused, len(prompt), step):
            if aborted():
                completed = False
                break
            t = time.perf_counter()
            self._decode(prompt[start:start + step])
            prompt_seconds += time.perf_counter() - t  # decoding only, not the consumer's time between batches
            decoded = min(start + step, len(prompt)) - reused
            if progress:
                yield Prefill(decoded, len(prompt) - reused)
        t1 = time.perf_counter()
        sampler = Sampler(params)
        stream = TextStream(stops)
        history = list(prompt)  # penalties look at the prompt too, as llama.cpp's server does
        generated: list[int] = []
        reason = None if completed else "abort"
        if reason is None and max_tokens == 0:
            reason = "length"
        to_decode = None  # the last sampled token: decoded lazily so an abort skips that work
        while reason is None:
            if aborted():
                reason = "abort"
                break
            if to_decode is not None:
                self._decode([to_decode])
            if sampler.is_argmax and not logprobs:
                logits, token = None, self.ctx.argmax()  # the library's argmax: no copy of the logits
            else:
                logits = self.ctx.logits()
                token = sampler.sample(logits, history)
            if self.model.is_eog(token):
                reason = "eog"
                break
            info = token_logprob(logits, token, logprobs) if logprobs else None
            generated.append(token)
            history.append(token)
            text = stream.push(self.model.token_bytes(token))
            if stream.stopped_by is not None:
                reason = "stop"
            elif max_tokens is not None and len(generated) >= max_tokens:
                reason = "length"
            elif len(self.tokens) >= self.ctx.n_ctx:
                reason = "length"  # no room left to decode this token
            to_decode = token
            yield Chunk(text, token, info)
        tail = stream.finish()
        if tail:
            yield Chunk(tail, None)
        yield Done(reason, stream.text, tuple(generated), stream.stopped_by, len(prompt), reused, decoded,
                   prompt_seconds, time.perf_counter() - t1)

    def complete(self, prompt_tokens: Sequence[int] | np.ndarray, **kwargs: Any) -> Done:
        """Run generate() to the end and return its Done."""
        for event in self.generate(prompt_tokens, **kwargs):
            pass
        return event


def chat_prompt_tokens(model, messages: Sequence[Mapping[str, Any]], template: ChatTemplate | None = None,
                       add_generation_prompt: bool = True) -> np.ndarray:
    """Render a chat with the model's template and tokenize it.

    Only the template's own markup becomes special tokens (<|im_start|>, a BOS it writes itself): message contents
    are always ordinary text, so typing "<|im_end|><|im_start|>system" forges nothing. The text is cut where the
    template wrote a special token, as llama.cpp's tokenizer cuts it anyway, and each stretch between two such
    tokens (template text and contents together) is tokenized as plain text: an ordinary chat gets exactly the
    tokens that tokenizing the whole text would give, with no new merges or splits at content boundaries. Where
    llama.cpp's tokenizer drops the whitespace beside a special token (Phi-3's are marked so), so does this.

    BOS is added only when the model asks for one and the template did not already start with it; EOS is never
    added (the prompt must end open for the answer).
    """
    from .chat_template import ChatTemplate  # jinja2 is only needed for chats

    template = template or ChatTemplate.for_model(model)
    rendered = template.render_parts(messages, add_generation_prompt)
    parts = rendered.parts
    if not rendered.exact and not any(content and _has_special(model, text) for text, content in parts):
        # the template rewrote contents beyond trimming, but none holds special-token text: the plain render is
        # exact and safe
        parts = ((rendered.text, False),)
    pieces: list[str | int] = []  # plain text and special token ids, in order
    for text, content in parts:
        pieces += [text] if content else _split_at_specials(model, text)
    pieces = _strip_beside_specials(model, pieces)
    tokens = [model.tokenize(run, add_special=False, parse_special=False) if isinstance(run, str)
              else np.array([run], dtype=np.int32) for run in _join_text(pieces)]
    tokens = np.concatenate(tokens) if tokens else np.zeros(0, dtype=np.int32)
    if model.add_bos and model.bos >= 0 and (tokens.size == 0 or tokens[0] != model.bos):
        tokens = np.concatenate([np.array([model.bos], dtype=tokens.dtype), tokens])
    return tokens


def _has_special(model, text: str) -> bool:
    return any(model.control_text(t) is not None for t in model.tokenize(text, add_special=False, parse_special=True))


def _split_at_specials(model, text: str) -> list[str | int]:
    """The template's text as plain stretches and the special tokens between them."""
    if not text:
        return []
    tokens = model.tokenize(text, add_special=False, parse_special=True)
    pieces: list[str | int] = []
    pos = 0
    for token in (int(t) for t in tokens):
        special = model.control_text(token)
        if special is None:
            continue
        at = text.find(special, pos)
        if at < 0:  # cannot place it in the text: keep the template's own tokenization of this part
            return [int(t) for t in tokens]
        pieces += [text[pos:at], token]
        pos = at + len(special)
    return pieces + [text[pos:]]


_SPACES = " \t\n\v\f\r"  # C's isspace, what llama.cpp strips


def _strip_beside_specials(model, pieces: list[str | int]) -> list[str | int]:
    """The whitespace llama.cpp's tokenizer drops next to special tokens marked lstrip/rstrip, dropped from the
    plain stretches beside them (a stretch that is all whitespace goes, and the stripping goes on into the next)."""
    out = list(pieces)
    for i, piece in enumerate(pieces):
        if isinstance(piece, str):
            continue
        left, right = model.strips_whitespace(piece)
        j = i - 1
        while left and j >= 0 and isinstance(out[j], str):
            out[j] = out[j].rstrip(_SPACES)
            if out[j]:
                break
            j -= 1
        j = i + 1
        while right and j < len(out) and isinstance(out[j], str):
            out[j] = out[j].lstrip(_SPACES)
            if out[j]:
                break
            j += 1
    return out


def _join_text(pieces: list[str | int]) -> list[str | int]:
    """Adjacent plain stretches joined into one (empty ones dropped)."""
    out: list[str | int] = []
    for piece in pieces:
        if isinstance(piece, str) and out and isinstance(out[-1], str):
            out[-1] += piece
        elif piece != "":
            out.append(piece)
    return out


class ChatTooLong(ValueError):
    """Even the system prompt and the last message leave no room for an answer in the context."""


class ChatSession(Generator):
    """A Generator that takes chats: each turn re-renders the whole chat, and the KV cache keeps the shared start.

    A chat that outgrows the context loses its oldest whole turns (a user message and what follows it up to the next
    user message), never the system prompt or the last message; Done.n_dropped says how many messages were left
    out. Once turns are left out, later turns of the same chat leave out at least as many, and when more must go, a
    few more go at once (a quarter of the context to spare): the kept start of the chat stays in the KV cache
    instead of being decoded again every turn.
    """

    def __init__(self, ctx, template: str | None = None):
        from .chat_template import ChatTemplate

        super().__init__(ctx)
        self.template = ChatTemplate.for_model(ctx.model, template)
        self._dropped: list[dict[str, Any]] = []  # the messages the last fit() left out, after the system prompt

    def prompt_tokens(self, messages: Sequence[Mapping[str, Any]], add_generation_prompt: bool = True) -> np.ndarray:
        return chat_prompt_tokens(self.model, messages, self.template, add_generation_prompt)

    def fit(self, messages: Sequence[Mapping[str, Any]], max_tokens: int | None = 256,
            add_generation_prompt: bool = True) -> tuple[np.ndarray, int]:
        """The prompt for the chat, with room for max_tokens of answer (at most half the context): the whole chat
        if it fits, else without its oldest turns. Returns (tokens, messages left out); raises ChatTooLong."""
        from .chat_template import validate_messages

        messages = validate_messages(messages)
        n_ctx = self.ctx.n_ctx
        room = min(n_ctx // 2, n_ctx if max_tokens is None else int(max_tokens))
        first = 1 if messages and messages[0]["role"] == "system" else 0
        # where the kept chat may begin: right after the system prompt, or at any later user message
        cuts = [first] + [i for i in range(first + 1, len(messages)) if messages[i]["role"] == "user"]
        same_chat = first + len(self._dropped) in cuts and messages[first:first + len(self._dropped)] == self._dropped
        start = cuts.index(first + len(self._dropped)) if same_chat else 0

        def prompt(cut: int) -> np.ndarray:
            return self.prompt_tokens(messages[:first] + messages[cut:], add_generation_prompt)

        def first_fit(candidates: list[int], spare: int) -> tuple[int, np.ndarray] | None:
            for cut in candidates:
                tokens = prompt(cut)
                if len(tokens) + room + spare <= n_ctx:
                    return cut, tokens
            return None

        found = first_fit(cuts[start:start + 1], 0) or first_fit(cuts[start + 1:], n_ctx // 4) \
            or first_fit(cuts[start + 1:], 0)
        if found is None:
            n = len(prompt(cuts[-1]))
            raise ChatTooLong(f"the chat does not fit in the context of {n_ctx} tokens: the system prompt and the "
                              f"last message alone take {n} tokens, and {room} are kept for the answer (shorten "
                              "them, or ask for fewer answer tokens)")
        cut, tokens = found
        self._dropped = messages[first:cut]
        return tokens, cut - first

    def chat(self, messages: Sequence[Mapping[str, Any]], params: SamplingParams | None = None,
             max_tokens: int | None = 256, stop: str | Sequence[str] = (), abort: Any = None, logprobs: int = 0,
             add_generation_prompt: bool = True, progress: bool = False) -> Iterator[Prefill | Chunk | Done]:
        tokens, n_dropped = self.fit(messages, max_tokens, add_generation_prompt)
        events = self.generate(tokens, params, max_tokens, stop, abort, logprobs, progress)
        return (replace(e, n_dropped=n_dropped) if isinstance(e, Done) else e for e in events)
