"""What the chat page's worker calls: one model, one chat session, JSON in and out.

Strings cross the JS bridge, not proxies, so nothing here depends on the runtime: the same class runs under
CPython with the native backend, which is how the tests check the page's answers byte for byte.
"""
from __future__ import annotations

import json
from dataclasses import asdict

from .capi import Backend
from .engine import Model
from .generate import ChatSession, Chunk, Done
from .sampling import GREEDY, SamplingParams

SETTINGS = ("temperature", "top_k", "top_p", "min_p", "repeat_penalty", "seed")


class ChatService:
    def __init__(self, model: Model, n_ctx: int = 2048, n_threads: int = 1):
        self.model = model
        self.ctx = model.context(n_ctx=min(n_ctx, model.n_ctx_train), n_threads=n_threads)
        self.session = ChatSession(self.ctx)
        self._events = None
        self._stop = False

    @classmethod
    def from_buffer(cls, backend: Backend, buffer: int, size: int, n_ctx: int = 2048, n_threads: int = 1):
        """Load the GGUF the worker downloaded into wasm memory. On success the model owns the buffer (close()
        frees it); on any failure (the load, the context, the chat template) this raises and the buffer is still
        the caller's to free: the half-built model is closed without touching it."""
        model = Model.from_buffer(buffer, size, backend, owns_buffer=False)
        try:
            service = cls(model, n_ctx, n_threads)
        except BaseException:
            model.close()
            raise
        model.adopt_buffer()
        return service

    def close(self) -> None:
        self._events = None
        self.model.close()  # closes the context too

    def card_json(self) -> str:
        return json.dumps({**self.model.card(), "n_ctx": self.ctx.n_ctx})

    def start(self, request_json: str) -> None:
        """Begin an answer to {messages: [{role, content}], max_tokens, stop, settings: {temperature, ...}}."""
        request = json.loads(request_json)
        settings = {k: v for k, v in (request.get("settings") or {}).items() if k in SETTINGS and v is not None}
        params = SamplingParams(**settings)
        self._stop = False
        self._events = self.session.chat(request["messages"], params, max_tokens=int(request.get("max_tokens", 256)),
                                         stop=request.get("stop") or (), abort=lambda: self._stop)

    def stop(self) -> None:
        """Ask the running answer to end before its next token."""
        self._stop = True

    def step(self) -> str | None:
        """The next event as JSON ({type: "text", text} or {type: "done", ...}); None once the answer is over."""
        if self._events is None:
            return None
        event = next(self._events, None)
        if event is None:
            self._events = None
            return None
        if isinstance(event, Chunk):
            return json.dumps({"type": "text", "text": event.text, "token": event.token})
        assert isinstance(event, Done)
        self._events = None
        done = asdict(event)
        done.update(type="done", tokens=list(event.tokens), n_generated=event.n_generated,
                    prompt_tokens_per_s=event.prompt_tokens_per_s,
                    generation_tokens_per_s=event.generation_tokens_per_s)
        return json.dumps(done)

    def bench(self, n_prompt: int, n_gen: int) -> str:
        """Prompt and generation tokens/s through the whole glue (greedy sampling, streaming, stop checks), on the
        same synthetic tokens the JS-only benchmark uses; the second of two runs (the first warms up)."""
        prompt = [1 + (i * 7919) % (self.model.n_vocab - 1) for i in range(n_prompt)]
        for _ in range(2):
            self.session.reset()
            done = self.session.complete(prompt, params=GREEDY, max_tokens=n_gen)
        self.session.reset()
        return json.dumps({"pp_tps": done.prompt_tokens_per_s, "tg_tps": done.generation_tokens_per_s,
                           "n_generated": done.n_generated})

    def answer(self, request_json: str) -> dict:
        """Run one answer to the end (for tests and non-streaming callers): the text and the done event."""
        self.start(request_json)
        text = []
        while (event := self.step()) is not None:
            data = json.loads(event)
            if data["type"] == "text":
                text.append(data["text"])
            else:
                return {"text": "".join(text), "done": data}
        raise RuntimeError("the answer ended without a done event")
