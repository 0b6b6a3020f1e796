"""What the chat page's worker calls: one model, one chat session, JSON in and out.

Strings cross the JS bridge, not proxies, so nothing here depends on the runtime: the same class runs under
CPython with the native backend, which is how the tests check the page's answers byte for byte.

The contract with the page (site/chat-worker.js):

- `ChatService.from_buffer(backend, buffer, size, n_ctx=2048, n_threads=1)` loads the GGUF the worker copied into
  library memory. On success the model owns the buffer (close() frees it); on failure it raises and the buffer is
  still the caller's, to free.
- `card_json()`: the model's card (engine.Model.card) plus "n_ctx" and "sampling_defaults": {temperature, top_k,
  top_p, min_p, repeat_penalty, repeat_last_n}, ours unless the GGUF recommends its own (general.sampling.*).
- `start(request_json)`: {messages: [{role, content}], max_tokens (default 256), stop: [str], settings: {...}}.
  settings is optional and may name any of the sampling_defaults keys and "seed"; missing keys take the defaults.
  Bad messages, bad settings, a failing chat template and a chat that cannot fit raise with a readable message.
- `step()`: the next event as JSON, None once the answer is over:
  {"type": "prompt", "decoded": n, "total": m} after each batch of the prompt (m tokens to decode; the rest of the
  chat is reused from the KV cache); {"type": "text", "text": str, "token": int | null} per token;
  {"type": "done", finish_reason ("stop" | "eog" | "length" | "abort"), text, tokens, stop, n_prompt, n_reused,
  n_prompt_decoded, prompt_seconds, generation_seconds, n_generated, prompt_tokens_per_s, generation_tokens_per_s,
  n_dropped} where n_dropped is how many of the oldest messages were left out so the chat fits in the context.
- `stop()`: the answer ends (finish_reason "abort") at the next prompt batch or token.
- `add_adapter(buffer, size, scale=1.0)`: load a GGUF LoRA adapter the worker copied into library memory and
  apply it at `scale` on top of those applied already; the buffer stays the caller's to free, whatever happens (the
  adapter keeps copies of its tensors). A refused adapter raises with the library's reason. Returns
  `adapters_json()`. `set_adapter_scale(id, scale)` and `remove_adapter(id)` likewise. Changing the adapters drops
  the cached chat (the KV cache was computed with other weights), and is refused while an answer is running.
- `adapters_json()`: {"adapters": [{id, name, alpha, scale}]} in the order they were added.
- `start_bench(request_json)`: {n_prompt (default 64), n_gen (default 64)}: a speed test of the loaded model
  (pocketmind.bench: the benchmark text's first n_prompt tokens, n_gen greedy tokens, after a warm-up); step() then
  gives bench.run()'s events as JSON: {"type": "progress", "phase", "done", "total"}*, then {"type": "done",
  "pp_tps", "tg_tps", ...}, and "" for a token whose progress is quiet (nothing to post: step again). stop() ends it
  early (the done event says stopped). The chat's KV cache is cleared.

The prompt is decoded PROMPT_BATCH tokens at a time, so a stop during a long prompt is seen within one batch.
"""
from __future__ import annotations

import json
from dataclasses import asdict, replace

from . import bench
from .capi import Backend
from .engine import Adapter, Model, load_service
from .generate import ChatSession, Chunk, Done, Prefill
from .sampling import GREEDY, GGUF_SAMPLING_KEYS, SamplingParams, defaults_from_metadata, settings_dict

SETTINGS = tuple(field for field, _ in GGUF_SAMPLING_KEYS.values()) + ("seed",)
# Prompt tokens per decode call. The worker sees Stop only between events, and a prompt event comes after each
# batch, so Stop waits for at most one batch: 256 (half llama.cpp's usual 512) halves that wait; much smaller
# batches would cost prompt speed.
PROMPT_BATCH = 256


class ChatService:
    def __init__(self, model: Model, n_ctx: int = 2048, n_threads: int = 1):
        self.model = model
        self.ctx = model.context(n_ctx=min(n_ctx, model.n_ctx_train), n_batch=PROMPT_BATCH, n_threads=n_threads)
        self.session = ChatSession(self.ctx)
        self.sampling_defaults = defaults_from_metadata(model.metadata)
        self._events = None
        self._stop = False
        self._adapters: list[tuple[int, Adapter, float]] = []  # (id, adapter, scale), in the order added
        self._next_adapter_id = 1

    @classmethod
    def from_buffer(cls, backend: Backend, buffer: int, size: int, n_ctx: int = 2048, n_threads: int = 1):
        """Load the GGUF the worker downloaded into wasm memory. On success the model owns the buffer (close()
        frees it); on any failure (the load, the context, the chat template) this raises and the buffer is still
        the caller's to free: the half-built model is closed without touching it."""
        return load_service(lambda model: cls(model, n_ctx, n_threads), backend, buffer, size)

    def close(self) -> None:
        self._events = None
        self.model.close()  # closes the context too

    def card_json(self) -> str:
        return json.dumps({**self.model.card(), "n_ctx": self.ctx.n_ctx,
                           "sampling_defaults": settings_dict(self.sampling_defaults)})

    # ---- LoRA adapters ----

    def adapters_json(self) -> str:
        return json.dumps({"adapters": [{"id": i, "name": a.name, "alpha": a.alpha, "scale": s}
                                        for i, a, s in self._adapters]})

    def _apply(self, adapters: list[tuple[int, Adapter, float]]) -> None:
        if self._events is not None:
            raise RuntimeError("an answer is running: stop it or let it end before changing adapters")
        self.ctx.set_adapters([(a, s) for _, a, s in adapters])
        self._adapters = adapters

    def _find(self, adapter_id: int) -> int:
        for k, (i, _, _) in enumerate(self._adapters):
            if i == adapter_id:
                return k
        raise KeyError(f"no adapter with id {adapter_id}")

    @staticmethod
    def _scale(scale) -> float:
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) or scale != scale or abs(scale) == float("inf"):
            raise ValueError(f"an adapter's scale must be a finite number, got {scale!r}")
        return float(scale)

    def add_adapter(self, buffer: int, size: int, scale: float = 1.0) -> str:
        """Load the adapter in library memory [buffer, buffer + size) and apply it too (see the module's docstring)."""
        scale = self._scale(scale)
        if self._events is not None:
            raise RuntimeError("an answer is running: stop it or let it end before changing adapters")
        adapter = Adapter.from_buffer(self.model, buffer, size)
        try:
            self._apply([*self._adapters, (self._next_adapter_id, adapter, scale)])
        except BaseException:
            adapter.close()
            raise
        if adapter.name is None:
            adapter.name = f"adapter {self._next_adapter_id}"
        self._next_adapter_id += 1
        return self.adapters_json()

    def set_adapter_scale(self, adapter_id: int, scale: float) -> str:
        scale = self._scale(scale)
        k = self._find(adapter_id)
        adapters = list(self._adapters)
        adapters[k] = (adapter_id, adapters[k][1], scale)
        self._apply(adapters)
        return self.adapters_json()

    def remove_adapter(self, adapter_id: int) -> str:
        k = self._find(adapter_id)
        adapter = self._adapters[k][1]
        self._apply(self._adapters[:k] + self._adapters[k + 1:])
        adapter.close()
        return self.adapters_json()

    def params(self, settings: dict | None) -> SamplingParams:
        """The sampling defaults with the request's settings in their place (unknown keys and nulls are ignored)."""
        if settings is not None and not isinstance(settings, dict):
            raise ValueError(f"settings must be an object, got {type(settings).__name__}")
        chosen = {k: v for k, v in (settings or {}).items() if k in SETTINGS and v is not None}
        return replace(self.sampling_defaults, **chosen)

    def start(self, request_json: str) -> None:
        """Begin an answer to {messages: [{role, content}], max_tokens, stop, settings: {temperature, ...}}."""
        request = json.loads(request_json)
        if not isinstance(request, dict):
            raise ValueError("the request must be a JSON object")
        params = self.params(request.get("settings"))
        self._stop = False
        self._events = None
        self._events = self.session.chat(request.get("messages"), params,
                                         max_tokens=int(request.get("max_tokens", 256)),
                                         stop=request.get("stop") or (), abort=lambda: self._stop, progress=True)

    def stop(self) -> None:
        """Ask the running answer to end before its next prompt batch or token."""
        self._stop = True

    def step(self) -> str | None:
        """The next event as JSON, or "" for a speed test's quiet step (see the module's docstring); None once the
        answer is over."""
        if self._events is None:
            return None
        event = next(self._events, None)
        if event is None:
            self._events = None
            return None
        if isinstance(event, dict):  # a speed test's events (start_bench)
            if event["type"] == "done":
                self._events = None
            return "" if event.get("quiet") else json.dumps(event)
        if isinstance(event, Prefill):
            return json.dumps({"type": "prompt", "decoded": event.decoded, "total": event.total})
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
        """Prompt and generation tokens/s through the whole glue (bench.measure: greedy sampling, streaming, stop
        checks, after a warm-up) on the benchmark text's first n_prompt tokens, in one call."""
        done = bench.measure(self.session, bench.text_prompt(self.model, n_prompt), n_gen)
        return json.dumps({"pp_tps": done["pp_tps"], "tg_tps": done["tg_tps"], "n_generated": done["n_generated"]})

    def start_bench(self, request_json: str) -> None:
        """Begin a speed test streamed through step() (see the module's docstring)."""
        request = json.loads(request_json) if request_json else {}
        if not isinstance(request, dict):
            raise ValueError("the request must be a JSON object")
        n_prompt, n_gen = request.get("n_prompt", 64), request.get("n_gen", 64)
        tokens = request.get("tokens")  # benchmarks may give the prompt's token ids themselves
        prompt = bench.text_prompt(self.model, n_prompt) if tokens is None else [int(t) for t in tokens]
        self._stop = False
        self._events = None
        self._events = bench.run(self.session, prompt, n_gen, abort=lambda: self._stop)

    def answer(self, request_json: str) -> dict:
        """Run one answer to the end (for tests and non-streaming callers): the text, the done event, and how many
        prompt events came before it."""
        self.start(request_json)
        text, n_prompt_events = [], 0
        while (event := self.step()) is not None:
            data = json.loads(event)
            if data["type"] == "text":
                text.append(data["text"])
            elif data["type"] == "prompt":
                n_prompt_events += 1
            else:
                return {"text": "".join(text), "done": data, "prompt_events": n_prompt_events}
        raise RuntimeError("the answer ended without a done event")
