"""Backend-neutral Model and Context: every later piece of glue talks to llama.cpp through these two classes.

The backend (native ctypes, or Pyodide's bridge to the wasm module) only moves calls and bytes; the checks,
size-query retries and array handling are written once, here.
"""
from __future__ import annotations

import os
import weakref
from collections.abc import Sequence
from typing import Any

import numpy as np

from .capi import (BUFFER_TOO_SMALL, CONTEXT_EMBEDDINGS, CONTEXT_KV_F32, EMBEDDINGS_MAX_SEQS, NOT_FOUND,
                   STATUS_NAMES, Backend)


class PocketmindError(RuntimeError):
    """A failed C API call: `status` is the PM_ERR_* code, the message is the library's own explanation."""

    def __init__(self, status: int, message: str):
        self.status = status
        self.status_name = STATUS_NAMES.get(status, str(status))
        super().__init__(message or f"pocketmind call failed ({self.status_name})")


def default_backend() -> Backend:
    from . import native

    return native.backend()


class _Scratch:
    """Library memory for call arguments and results, grown on demand and reused across calls."""

    def __init__(self, backend: Backend):
        self.backend = backend
        self.ptr = 0
        self.size = 0

    def get(self, size: int) -> int:
        if size > self.size:
            self.release()
            self.size = max(size, 256)
            self.ptr = int(self.backend.call("pm_buffer_alloc", self.size))
            if not self.ptr:
                self.size = 0
                raise MemoryError(f"cannot allocate {size} bytes in the model library")
        return self.ptr

    def release(self) -> None:
        if self.ptr:
            self.backend.call("pm_buffer_free", self.ptr)
        self.ptr, self.size = 0, 0


class _Handle:
    """Owns one C API object; freed by close() or when garbage-collected."""

    _free_fn = ""

    def __init__(self, backend: Backend, ptr: int):
        self.backend = backend
        self._ptr = ptr
        self._scratch = _Scratch(backend)

    @property
    def ptr(self) -> int:
        if not self._ptr:
            raise ValueError(f"{type(self).__name__} is closed")
        return self._ptr

    def _check(self, status: int) -> int:
        return check(self.backend, status)

    def _i32(self) -> int:
        """Scratch space for one int32 result; read it back with _read_i32."""
        return self._scratch.get(8)

    def _read_i32(self, ptr: int) -> int:
        return int.from_bytes(self.backend.read(ptr, 4), "little", signed=True)

    def _string(self, fn: str, *args: int, key: str | None = None) -> str | None:
        """Call a string getter of the C API, growing the buffer when the library says it is too small. With
        `key`, the key string is passed first and a missing key gives None."""
        encoded = key.encode() + b"\0" if key is not None else b""
        head = (len(encoded) + 7) // 8 * 8
        size = 256
        while True:
            base = self._scratch.get(head + size + 8)  # may move: (re)write the key after it
            if key is not None:
                self.backend.write(base, encoded)
                args = (base,)
            buf, n_out = base + head, base + head + size
            status = self.backend.call(fn, self.ptr, *args, buf, size, n_out)
            if status == NOT_FOUND and key is not None:
                return None
            if status == BUFFER_TOO_SMALL:
                size = self._read_i32(n_out) + 1
                continue
            self._check(status)
            return self.backend.read(buf, self._read_i32(n_out)).decode("utf-8", errors="replace")

    def close(self) -> None:
        if self._ptr:
            self.backend.call(self._free_fn, self._ptr)
            self._ptr = 0
        self._scratch.release()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass


def check(backend: Backend, status: int) -> int:
    if status < 0:
        raise PocketmindError(status, backend.read_cstring(int(backend.call("pm_last_error"))))
    return status


class Model(_Handle):
    """A loaded GGUF model: facts, metadata, tokenizer, and contexts to run it."""

    _free_fn = "pm_model_free"

    def __init__(self, backend: Backend, ptr: int, buffer: int = 0):
        super().__init__(backend, ptr)
        # library memory holding the GGUF bytes (wasm uses it in place) and whether close() frees it: a buffer has
        # exactly one owner at every moment, either this model or whoever allocated it
        self._buffer = buffer
        self._owns_buffer = False  # see adopt_buffer()
        self._contexts: weakref.WeakSet[Context] = weakref.WeakSet()  # closed before the model is freed
        self._adapters: weakref.WeakSet[Adapter] = weakref.WeakSet()  # likewise
        self._trainers: weakref.WeakSet[Trainer] = weakref.WeakSet()  # likewise
        self.n_vocab = backend.call("pm_model_n_vocab", ptr)
        self.n_ctx_train = backend.call("pm_model_n_ctx_train", ptr)
        self.n_embd = backend.call("pm_model_n_embd", ptr)
        self.n_params = int(backend.call("pm_model_n_params", ptr))
        self.size = int(backend.call("pm_model_size", ptr))
        self.bos = backend.call("pm_model_token_bos", ptr)
        self.eos = backend.call("pm_model_token_eos", ptr)
        self.eot = backend.call("pm_model_token_eot", ptr)
        self.add_bos = bool(backend.call("pm_model_add_bos", ptr))
        self._control_texts: dict[int, str | None] = {}  # control_text's answers: asked for every prompt
        self._strips: dict[int, tuple[bool, bool]] = {}  # strips_whitespace's answers
        self._token_bytes: dict[tuple[int, bool], bytes] = {}  # token_bytes' answers: asked for every token

    # ---- loading ----

    @classmethod
    def from_file(cls, path: str | os.PathLike, backend: Backend | None = None) -> Model:
        backend = backend or default_backend()
        return cls(backend, _load_by_path(backend, "pm_model_load_file", path))

    @classmethod
    def trainable(cls, path: str | os.PathLike, backend: Backend | None = None) -> Model:
        """Load a GGUF (F32 in the blocks to train: see convert_model) with its weights in writable memory of its
        own, as Model.trainer needs."""
        backend = backend or default_backend()
        return cls(backend, _load_by_path(backend, "pm_model_load_trainable", path))

    @classmethod
    def from_bytes(cls, data: bytes | bytearray | memoryview, backend: Backend | None = None) -> Model:
        """Load GGUF bytes: they are copied once into library memory, which the model then uses in place and owns."""
        backend = backend or default_backend()
        buffer, size = _copy_in(backend, data, "model")
        try:
            model = cls.from_buffer(buffer, size, backend, owns_buffer=False)
        except BaseException:
            backend.call("pm_buffer_free", buffer)
            raise
        model.adopt_buffer()
        return model

    @classmethod
    def from_buffer(cls, buffer: int, size: int, backend: Backend, *, owns_buffer: bool) -> Model:
        """Load GGUF bytes already in library memory (from pm_buffer_alloc), used in place.

        owns_buffer=True: the model frees the buffer when it is closed. owns_buffer=False: the caller keeps it and
        must free it only after closing the model; a caller that builds more on the model (a context, a chat
        template) loads it so, and calls adopt_buffer() once all of that has succeeded. Either way, a failed load
        leaves the buffer with the caller.
        """
        scratch = _Scratch(backend)
        try:
            out = scratch.get(8)
            check(backend, backend.call("pm_model_load_buffer", buffer, size, out))
            ptr = _read_pointer(backend, out)
        finally:
            scratch.release()
        model = cls(backend, ptr, buffer=buffer)  # if this fails, its __del__ frees the model but not the buffer
        if owns_buffer:
            model.adopt_buffer()
        return model

    def adopt_buffer(self) -> None:
        """Take ownership of the buffer the model was loaded from: close() frees it from now on."""
        if not self._ptr:
            raise ValueError("Model is closed")
        self._owns_buffer = bool(self._buffer)

    @property
    def owns_buffer(self) -> bool:
        return self._owns_buffer

    def close(self) -> None:
        for trainer in list(getattr(self, "_trainers", ())):
            trainer.close()
        for ctx in list(getattr(self, "_contexts", ())):
            ctx.close()
        for adapter in list(getattr(self, "_adapters", ())):
            adapter.close()
        super().close()
        buffer, owned = getattr(self, "_buffer", 0), getattr(self, "_owns_buffer", False)
        self._buffer, self._owns_buffer = 0, False  # forgotten before freeing: a second close() frees nothing
        if buffer and owned:
            self.backend.call("pm_buffer_free", buffer)

    # ---- facts ----

    @property
    def description(self) -> str:
        return self._string("pm_model_desc")

    @property
    def metadata(self) -> dict[str, str]:
        """Every GGUF metadata key as a string (llama.cpp summarises arrays)."""
        count = self.backend.call("pm_model_meta_count", self.ptr)
        return {self._string("pm_model_meta_key", i): self._string("pm_model_meta_value", i) for i in range(count)}

    def meta(self, key: str, default: str | None = None) -> str | None:
        value = self._string("pm_model_meta_get", key=key)
        return default if value is None else value

    @property
    def source(self) -> str | None:
        """The file llama.cpp read the model from (in Pyodide, the MEMFS file that stands for a loaded buffer);
        None for a buffer natively."""
        return self._borrowed_string("pm_model_source")

    @property
    def chat_template(self) -> str | None:
        return self._borrowed_string("pm_model_chat_template")

    def _borrowed_string(self, fn: str) -> str | None:
        """fn(model, &out) for a C getter that points out at a string the model owns; None where it has none."""
        out = self._scratch.get(8)
        status = self.backend.call(fn, self.ptr, out)
        if status == NOT_FOUND:
            return None
        self._check(status)
        return self.backend.read_cstring(_read_pointer(self.backend, out))

    def card(self) -> dict[str, Any]:
        """The facts a UI shows about the model."""
        meta = self.metadata
        return {
            "description": self.description,
            "architecture": meta.get("general.architecture"),
            "n_params": self.n_params,
            "size": self.size,
            "n_vocab": self.n_vocab,
            "n_ctx_train": self.n_ctx_train,
            "n_embd": self.n_embd,
            "bos": self.bos,
            "eos": self.eos,
            "eot": self.eot,
            "has_chat_template": self.chat_template is not None,
            "general": {k: v for k, v in meta.items() if k.startswith("general.")},
        }

    # ---- tokens ----

    def tokenize(self, text: str | bytes, add_special: bool = True, parse_special: bool = False) -> np.ndarray:
        data = text.encode("utf-8") if isinstance(text, str) else bytes(text)
        n_max = len(data) + 8
        while True:
            text_ptr = self._scratch.get(len(data) + 4 * n_max + 16)
            tokens_ptr = text_ptr + (len(data) + 3) // 4 * 4
            n_out = tokens_ptr + 4 * n_max
            self.backend.write(text_ptr, data)
            status = self.backend.call("pm_tokenize", self.ptr, text_ptr, len(data), int(add_special),
                                       int(parse_special), tokens_ptr, n_max, n_out)
            if status == BUFFER_TOO_SMALL:
                n_max = self._read_i32(n_out)
                continue
            self._check(status)
            n = self._read_i32(n_out)
            return np.frombuffer(self.backend.read(tokens_ptr, 4 * n), dtype=np.int32).copy()

    def token_bytes(self, token: int, special: bool = False) -> bytes:
        """The raw bytes of one token: may be part of a UTF-8 character."""
        key = (int(token), bool(special))
        known = self._token_bytes.get(key)
        if known is None:
            known = self._token_bytes[key] = self._read_token_bytes(*key)
        return known

    def _read_token_bytes(self, token: int, special: bool) -> bytes:
        size = 64
        while True:
            buf = self._scratch.get(size + 8)
            n_out = buf + size
            status = self.backend.call("pm_token_bytes", self.ptr, token, int(special), buf, size, n_out)
            if status == BUFFER_TOO_SMALL:
                size = self._read_i32(n_out)
                continue
            self._check(status)
            return self.backend.read(buf, self._read_i32(n_out))

    def detokenize(self, tokens: Sequence[int], special: bool = False) -> bytes:
        return b"".join(self.token_bytes(t, special) for t in tokens)

    def control_text(self, token: int) -> str | None:
        """The text of a control token (<|im_start|>, a BOS: it has text only when rendered as special), else
        None. Cached: chat prompts ask it of every token of the template's markup."""
        token = int(token)
        if token not in self._control_texts:
            special = self.token_bytes(token, special=True)
            plain = b"" if special == b"" else self.token_bytes(token, special=False)
            self._control_texts[token] = special.decode("utf-8", errors="replace") if special and not plain else None
        return self._control_texts[token]

    def strips_whitespace(self, token: int) -> tuple[bool, bool]:
        """Whether llama.cpp's tokenizer drops the whitespace (left, right) next to this control token when it parses
        special tokens (Phi-3 marks its special tokens so). Asked of the tokenizer itself: a newline beside the
        token's text that yields no token of its own was stripped. Cached."""
        token = int(token)
        if token not in self._strips:
            text = self.control_text(token)
            if text is None:
                self._strips[token] = (False, False)
            else:
                alone = self.tokenize(text, add_special=False, parse_special=True).tolist()
                self._strips[token] = tuple(  # type: ignore[assignment]
                    self.tokenize(probe, add_special=False, parse_special=True).tolist() == alone
                    for probe in ("\n" + text, text + "\n"))
        return self._strips[token]

    def is_eog(self, token: int) -> bool:
        return bool(self.backend.call("pm_model_is_eog", self.ptr, int(token)))

    # ---- running ----

    def context(self, n_ctx: int = 0, n_batch: int = 512, n_threads: int = 1, embeddings: bool = False,
                kv_f32: bool = False) -> Context:
        """A new context. kv_f32 keeps the KV cache in F32 (twice the memory) for bit-level comparisons."""
        flags = (CONTEXT_EMBEDDINGS if embeddings else 0) | (CONTEXT_KV_F32 if kv_f32 else 0)
        out = self._scratch.get(8)
        self._check(self.backend.call("pm_context_new", self.ptr, int(n_ctx), int(n_batch), int(n_threads),
                                      flags, out))
        ctx = Context(self, _read_pointer(self.backend, out))
        self._contexts.add(ctx)
        return ctx

    def trainer(self, n_ctx: int, n_layers: int, n_threads: int = 1) -> Trainer:
        """Fine-tuning state for this model (loaded with Model.trainable): AdamW on the last n_layers blocks and
        the output norm, one window of n_ctx tokens per step."""
        out = self._scratch.get(8)
        self._check(self.backend.call("pm_trainer_new", self.ptr, int(n_ctx), int(n_layers), int(n_threads), out))
        trainer = Trainer(self, _read_pointer(self.backend, out), int(n_ctx))
        self._trainers.add(trainer)
        return trainer


class Context(_Handle):
    """A KV cache and compute state for one sequence of one model."""

    _free_fn = "pm_context_free"

    def __init__(self, model: Model, ptr: int):
        super().__init__(model.backend, ptr)
        self.model = model  # keeps the model alive as long as the context
        self.n_ctx = self.backend.call("pm_context_n_ctx", ptr)
        self.n_batch = self.backend.call("pm_context_n_batch", ptr)
        # the token at each KV position 0.. as decoded through this object, so a caller can keep a shared prefix
        # (cached_prefix); None once it is unknown (a failed decode, a removed middle range)
        self._kv_tokens: list[int] | None = []
        self._adapters: list[tuple[Adapter, float]] = []  # the LoRA adapters applied, with their scales

    @property
    def n_past(self) -> int:
        """Tokens held in the KV cache (positions 0 .. n_past-1)."""
        return self.backend.call("pm_kv_pos_max", self.ptr) + 1

    def _tokens_arg(self, tokens: Sequence[int] | np.ndarray) -> tuple[int, int, int]:
        """Copy token ids into scratch memory: (their address, their count, 8 free bytes after them)."""
        array = np.ascontiguousarray(tokens, dtype=np.int64)
        if array.ndim != 1:
            raise ValueError("tokens must be a flat sequence of ids")
        if array.size and (array.min() < -(2**31) or array.max() >= 2**31):
            raise PocketmindError(-5, "token ids must fit in 32 bits")
        array = array.astype(np.int32)
        size = (array.nbytes + 7) // 8 * 8
        ptr = self._scratch.get(size + 8)
        self.backend.write(ptr, array)
        return ptr, len(array), ptr + size

    def decode(self, tokens: Sequence[int] | np.ndarray, pos: int | None = None, all_logits: bool = False) -> None:
        """Append tokens to the sequence (at `pos`, default: after what the cache holds)."""
        # a generation's step, one token, goes without the token buffer (pm_decode_one): in the browser, filling it
        # cost more than the rest of the glue's token
        one = (not all_logits and isinstance(tokens, (list, tuple)) and len(tokens) == 1
               and type(tokens[0]) is int and -(2**31) <= tokens[0] < 2**31)
        if not one:
            ptr, n, _ = self._tokens_arg(tokens)
            if n == 0:
                raise PocketmindError(-1, "decode needs at least one token")
        pos = self.n_past if pos is None else pos
        known = self._kv_tokens
        self._kv_tokens = None  # unknown until the decode succeeded
        if one:
            self._check(self.backend.call("pm_decode_one", self.ptr, tokens[0], int(pos)))
        else:
            self._check(self.backend.call("pm_decode", self.ptr, ptr, n, int(pos), int(all_logits)))
        if known is not None and pos == len(known):
            known.extend([tokens[0]] if one else np.asarray(tokens, dtype=np.int64).ravel().tolist())
            self._kv_tokens = known

    def logits(self, i: int = -1) -> np.ndarray:
        """Logits of position i of the last decode (default its last token): n_vocab float32, valid until the next
        decode (a view on the library's memory where the runtime allows)."""
        return self.backend.float32_array(self._logits_ptr(i), self.model.n_vocab)

    def argmax(self, i: int = -1) -> int:
        """The index of the largest logit of position i (numpy's argmax: the greedy token). Where the backend's
        arrays are copies (the browser), the library finds it (pm_argmax) instead of the logits being copied out."""
        if self.backend.arrays_are_views:
            return int(np.argmax(self.logits(i)))
        return int(self.backend.call("pm_argmax", self._logits_ptr(i), self.model.n_vocab))

    def _logits_ptr(self, i: int) -> int:
        ptr = int(self.backend.call("pm_logits", self.ptr, int(i)))
        if not ptr:
            check(self.backend, -1)
        return ptr

    def kv_remove(self, p0: int, p1: int = -1) -> None:
        known = self._kv_tokens
        self._kv_tokens = None
        self._check(self.backend.call("pm_kv_remove", self.ptr, int(p0), int(p1)))
        if known is not None and (p1 < 0 or p1 >= len(known)):
            del known[max(int(p0), 0):]
            self._kv_tokens = known

    def kv_clear(self) -> None:
        self.backend.call("pm_kv_clear", self.ptr)
        self._kv_tokens = []

    # ---- LoRA adapters ----

    @property
    def adapters(self) -> list[tuple[Adapter, float]]:
        """The adapters applied, with their scales (a closed adapter is no longer applied)."""
        return [(a, s) for a, s in self._adapters if a._ptr]

    def set_adapters(self, adapters: Sequence[tuple[Adapter, float]] | dict[Adapter, float]) -> None:
        """Apply these adapters, each at its scale, instead of those applied before ([] removes them all). Each
        must be loaded for this context's model. When the set changes, the KV cache is cleared: what it holds was
        computed with other weights."""
        pairs = list(adapters.items()) if isinstance(adapters, dict) else [(a, s) for a, s in adapters]
        for adapter, scale in pairs:
            if not isinstance(adapter, Adapter):
                raise TypeError(f"expected an Adapter, got {type(adapter).__name__}")
            if isinstance(scale, bool) or not isinstance(scale, (int, float, np.floating, np.integer)):
                raise TypeError(f"an adapter's scale must be a number, got {type(scale).__name__}")
        pairs = [(a, float(s)) for a, s in pairs]
        n = len(pairs)
        size = self.backend.pointer_size
        base = self._scratch.get(n * (size + 4) + 8)
        if n:
            pointers = b"".join(a.ptr.to_bytes(size, "little") for a, _ in pairs)
            self.backend.write(base, pointers)
            self.backend.write(base + n * size, np.array([s for _, s in pairs], dtype=np.float32))
        before = [(id(a), np.float32(s)) for a, s in self.adapters if s != 0]
        self._check(self.backend.call("pm_context_set_adapters", self.ptr, base, base + n * size, n))
        self._adapters = pairs
        if sorted(before) != sorted((id(a), np.float32(s)) for a, s in pairs if s != 0):
            self.kv_clear()
        for adapter, _ in pairs:
            adapter._users.add(self)

    def clear_adapters(self) -> None:
        self.set_adapters([])

    def _adapter_closed(self, adapter: Adapter) -> None:
        """The library took a closed adapter off this context: forget it, and the cache computed with it."""
        if any(a is adapter and s != 0 for a, s in self._adapters):
            self.kv_clear()
        self._adapters = [(a, s) for a, s in self._adapters if a is not adapter]

    def cached_prefix(self, tokens: Sequence[int] | np.ndarray) -> int:
        """How many leading `tokens` the KV cache already holds at positions 0.. (0 when unknown)."""
        known = self._kv_tokens
        if not known or len(known) != self.n_past:
            return 0
        return common_prefix(known, tokens)

    def embed(self, tokens: Sequence[int] | np.ndarray) -> np.ndarray:
        """Pooled embedding of one text (the context needs embeddings=True); a copy the caller owns."""
        return self.embed_batch([tokens])[0]

    def embed_batch(self, texts: Sequence[Sequence[int] | np.ndarray]) -> np.ndarray:
        """Pooled embeddings of several texts' tokens decoded as one batch: a (len(texts), n_embd) float32 matrix.
        Their tokens together must fit n_batch, and at most EMBEDDINGS_MAX_SEQS texts go in one call."""
        if not len(texts):
            return np.empty((0, self.model.n_embd), dtype=np.float32)
        ids = [np.ascontiguousarray(t, dtype=np.int64) for t in texts]
        if any(t.ndim != 1 for t in ids):
            raise ValueError("each text's tokens must be a flat sequence of ids")
        flat = np.concatenate(ids)
        if flat.size and (flat.min() < -(2**31) or flat.max() >= 2**31):
            raise PocketmindError(-5, "token ids must fit in 32 bits")
        lengths = np.array([len(t) for t in ids], dtype=np.int32)
        dim = self.model.n_embd
        # one scratch block: the tokens, the lengths, then the output rows
        n_tok, n_len = 4 * len(flat), 4 * len(lengths)
        ptr = self._scratch.get(n_tok + n_len + 4 * dim * len(lengths))
        self.backend.write(ptr, flat.astype(np.int32))
        self.backend.write(ptr + n_tok, lengths)
        out = ptr + n_tok + n_len
        self._check(self.backend.call("pm_embeddings", self.ptr, ptr, ptr + n_tok, len(lengths), out))
        return self.backend.float32_array(out, len(lengths) * dim).copy().reshape(len(lengths), dim)


class Adapter(_Handle):
    """A LoRA adapter loaded for one model (Context.set_adapters applies it). Its tensors are copies: the bytes it
    was loaded from are not kept."""

    _free_fn = "pm_adapter_free"

    def __init__(self, model: Model, ptr: int):
        super().__init__(model.backend, ptr)
        self.model = model  # keeps the model alive as long as the adapter
        self._users: weakref.WeakSet[Context] = weakref.WeakSet()  # contexts it was applied to
        model._adapters.add(self)
        alpha = self.meta("adapter.lora.alpha")
        self.alpha = float(alpha) if alpha is not None else None
        self.name = self.meta("general.name")

    @classmethod
    def from_bytes(cls, model: Model, data: bytes | bytearray | memoryview) -> Adapter:
        """Load a GGUF LoRA adapter held in memory, for `model` (copied into library memory for the load only)."""
        backend = model.backend
        buffer, size = _copy_in(backend, data, "adapter")
        try:
            return cls.from_buffer(model, buffer, size)
        finally:
            backend.call("pm_buffer_free", buffer)

    @classmethod
    def from_buffer(cls, model: Model, buffer: int, size: int) -> Adapter:
        """Load a GGUF LoRA adapter from library memory. The buffer stays the caller's (free it after this call,
        whether it succeeded or not): the adapter keeps copies of its tensors."""
        scratch = _Scratch(model.backend)
        try:
            out = scratch.get(8)
            check(model.backend, model.backend.call("pm_adapter_load_buffer", model.ptr, buffer, size, out))
            ptr = _read_pointer(model.backend, out)
        finally:
            scratch.release()
        return cls(model, ptr)

    @classmethod
    def from_file(cls, model: Model, path: str | os.PathLike) -> Adapter:
        """Load a GGUF LoRA adapter by path (a path of the runtime's file system: in Pyodide, its MEMFS)."""
        return cls(model, _load_by_path(model.backend, "pm_adapter_load_file", path, model.ptr))

    def meta(self, key: str, default: str | None = None) -> str | None:
        """One metadata value of the adapter's GGUF as a string."""
        value = self._string("pm_adapter_meta_get", key=key)
        return default if value is None else value

    def close(self) -> None:
        if self._ptr:
            for ctx in list(getattr(self, "_users", ())):
                if ctx._ptr:
                    ctx._adapter_closed(self)
        super().close()


class Trainer(_Handle):
    """llama.cpp's optimizer on one model (Model.trainer): step() trains on or measures one window of tokens."""

    _free_fn = "pm_trainer_free"

    def __init__(self, model: Model, ptr: int, n_ctx: int):
        super().__init__(model.backend, ptr)
        self.model = model  # keeps the model alive as long as the trainer
        self.n_ctx = n_ctx
        self.n_params = int(self.backend.call("pm_trainer_n_params", ptr))

    def step(self, tokens: Sequence[int] | np.ndarray, train: bool = True, lr: float = 1e-4,
             weight_decay: float = 0.0, counted: Sequence[bool] | np.ndarray | None = None) -> float:
        """The mean cross-entropy of predicting tokens[1:] from tokens[:-1] (n_ctx + 1 tokens), then, if train,
        one AdamW step on it. counted (n_ctx flags, None: all): which predictions, of tokens[i + 1], the loss and
        its gradient count; the mean is over those."""
        arr = np.ascontiguousarray(tokens, dtype=np.int32)
        if arr.ndim != 1 or arr.size != self.n_ctx + 1:
            raise ValueError(f"a training window holds n_ctx + 1 = {self.n_ctx + 1} tokens, not {arr.size}")
        flags = b""
        if counted is not None:
            mask = np.asarray(counted, dtype=bool)
            if mask.shape != (self.n_ctx,):
                raise ValueError(f"counted flags one prediction per token read: n_ctx = {self.n_ctx}, not {mask.size}")
            flags = mask.astype(np.uint8).tobytes()
        ptr = self._scratch.get(arr.nbytes + len(flags) + 8)
        flags_ptr = ptr + arr.nbytes if flags else 0
        loss = ptr + arr.nbytes + len(flags)
        self.backend.write(ptr, arr.tobytes() + flags)
        self._check(self.backend.call("pm_trainer_step", self.ptr, ptr, flags_ptr, int(train), float(lr),
                                      float(weight_decay), loss))
        return float(np.frombuffer(self.backend.read(loss, 4), dtype=np.float32)[0])

    def checkpoint(self) -> None:
        """Copy the trainable weights aside; restore() puts them back."""
        self._check(self.backend.call("pm_trainer_checkpoint", self.ptr, 1))

    def restore(self) -> None:
        self._check(self.backend.call("pm_trainer_checkpoint", self.ptr, 0))

    def write(self, path: str | os.PathLike) -> None:
        """Write the trained weights into the F32 GGUF at path (the file the model was loaded from, or a copy)."""
        (arg,) = _c_strings(self.backend, self._scratch, path)
        self._check(self.backend.call("pm_trainer_write", self.ptr, arg))


def convert_model(path_in: str | os.PathLike, path_out: str | os.PathLike, weight_type: str, n_threads: int = 1,
                  backend: Backend | None = None) -> None:
    """Write the GGUF at path_in to path_out with weights of weight_type: "F32" (dequantized, for training),
    "F16", "Q8_0", "Q4_0" or "Q4_1"; the metadata is kept. On failure nothing is left at path_out."""
    backend = backend or default_backend()
    scratch = _Scratch(backend)
    try:
        ptrs = _c_strings(backend, scratch, path_in, path_out, weight_type)
        check(backend, backend.call("pm_model_convert", *ptrs, int(n_threads)))
    finally:
        scratch.release()


def load_service(make, backend: Backend, buffer: int, size: int):
    """make(model) on the GGUF in library memory, with the buffer rule every service's from_buffer keeps: on
    success the model owns the buffer; if the load or make fails, this raises and the buffer is still the caller's
    (the half-built model is closed without touching it)."""
    model = Model.from_buffer(buffer, size, backend, owns_buffer=False)
    try:
        service = make(model)
    except BaseException:
        model.close()
        raise
    model.adopt_buffer()
    return service


def _load_by_path(backend: Backend, fn: str, path: str | os.PathLike, *args: int) -> int:
    """fn(*args, path, out) for a C loader that takes a NUL-terminated path: the pointer it wrote to out."""
    scratch = _Scratch(backend)
    try:
        arg, out = _c_strings(backend, scratch, path, out_bytes=8)
        check(backend, backend.call(fn, *args, arg, out))
        return _read_pointer(backend, out)
    finally:
        scratch.release()


def _c_strings(backend: Backend, scratch: _Scratch, *values: str | os.PathLike, out_bytes: int = 0) -> list[int]:
    """Each value (text or a path) NUL-terminated in one scratch block, 8-byte aligned, for a C call: their
    pointers, then (with out_bytes) that much room for the call's result."""
    encoded = [os.fsencode(v) + b"\0" for v in values]
    sizes = [(len(e) + 7) // 8 * 8 for e in encoded]
    at = scratch.get(sum(sizes) + out_bytes)
    pointers = []
    for data, size in zip(encoded, sizes):
        backend.write(at, data)
        pointers.append(at)
        at += size
    return pointers + ([at] if out_bytes else [])


def _copy_in(backend: Backend, data: bytes | bytearray | memoryview, what: str) -> tuple[int, int]:
    """(buffer, size): data copied into new library memory (pm_buffer_alloc), which the caller then owns."""
    size = len(data)
    if size == 0:
        raise PocketmindError(-1, f"the {what} data is empty")
    buffer = int(backend.call("pm_buffer_alloc", size))
    if not buffer:
        raise MemoryError(f"cannot allocate {size} bytes for the {what}")
    try:
        backend.write(buffer, data)
    except BaseException:
        backend.call("pm_buffer_free", buffer)
        raise
    return buffer, size


def _read_pointer(backend: Backend, ptr: int) -> int:
    return int.from_bytes(backend.read(ptr, backend.pointer_size), "little")


def common_prefix(a: Sequence[int] | np.ndarray, b: Sequence[int] | np.ndarray) -> int:
    """How many leading token ids two sequences share."""
    a = np.asarray(a, dtype=np.int64).ravel()
    b = np.asarray(b, dtype=np.int64).ravel()
    n = min(a.size, b.size)
    differ = np.flatnonzero(a[:n] != b[:n])
    return int(differ[0]) if differ.size else n
