"""Whether a model fits in what is left of the engine's WebAssembly memory, decided before it is downloaded.

The chat worker (site/chat-worker.js) asks `check_room` before it fetches a model in place of the loaded one, so
a model too large is refused with the numbers a person needs (how much it needs, how much there is) instead of
failing after gigabytes were fetched; the loaded model stays loaded and usable.

The rule (numbers in docs/memory.md, measured by benchmarks/memory.py):

    need      = file bytes + CONTEXT_OVERHEAD_BYTES
    available = WASM_MAX_BYTES - in use

- WASM_MAX_BYTES is the wasm32 module's largest memory (-sMAXIMUM_MEMORY=4GB in wasm/build.py; a test checks that
  they agree).
- The model's file is held whole in wasm memory and used in place, so it counts byte for byte.
- CONTEXT_OVERHEAD_BYTES covers what a chat context adds on top of the file (n_ctx 2048, n_batch 256): the KV cache,
  llama.cpp's compute buffers (they grow with n_batch x n_vocab: Gemma 3's vocabulary has 262 144 tokens,
  SmolLM2's 49 152), the vocabulary's tables, our own scratch, and the slack of the memory's growth steps. Measured in the chat page (benchmarks/memory.py), the engine's peak wasm memory after one answer minus
  its memory before the model minus the file: 158 MiB for SmolLM2-135M (Q4_1) and 439 MiB for Gemma 3 270M
  (Q4_K_M). The constant is the larger rounded up; a model with a larger vocabulary or many more layers may need
  more, which the engine then reports as an out-of-memory failure after the download.
- In use: the memory the engine holds with no model loaded (the chat worker frees the old model before it reads
  the new one). WebAssembly memory never shrinks, so its current size says nothing about what is free inside it;
  what stays allocated once a model is freed is what the engine held before its first model (tests/
  test_browser_memory.py: 50 loads and frees leave the memory where the first few put it). The worker passes the
  memory's size measured when the engine started.
"""
from __future__ import annotations

MiB = 1 << 20
WASM_MAX_BYTES = 4 << 30  # -sMAXIMUM_MEMORY=4GB (wasm/build.py)
CONTEXT_OVERHEAD_BYTES = 512 * MiB


def need_bytes(file_bytes: int) -> int:
    """The wasm memory a chat with a model of `file_bytes` needs (the rule above)."""
    return int(file_bytes) + CONTEXT_OVERHEAD_BYTES


def _mb(n: int) -> str:
    return f"{n / MiB:,.0f} MB"


def room_message(name: str, file_bytes: int, in_use_bytes: int, max_bytes: int = WASM_MAX_BYTES) -> str | None:
    """Why a model of `file_bytes` does not fit next to `in_use_bytes` of engine memory, or None when it fits (or
    when its size is not a byte count at all: site/engine-boot.js refuses that, before download, with its message)."""
    if isinstance(file_bytes, bool) or not isinstance(file_bytes, int) or file_bytes <= 0:
        return None
    need = need_bytes(file_bytes)
    available = max(0, max_bytes - int(in_use_bytes))
    if need <= available:
        return None
    return (f"{name} is too large for this page: it needs about {_mb(need)} of memory ({_mb(file_bytes)} for the "
            f"model and {_mb(CONTEXT_OVERHEAD_BYTES)} for its context), but only {_mb(available)} is available "
            f"({_mb(max_bytes)} at most, {_mb(in_use_bytes)} in use by the engine). It was not downloaded; "
            f"choose a smaller model.")


def check_room(name: str, file_bytes: int, in_use_bytes: int, max_bytes: int = WASM_MAX_BYTES) -> None:
    """Raise MemoryError with room_message's text when the model does not fit."""
    message = room_message(name, file_bytes, in_use_bytes, max_bytes)
    if message:
        raise MemoryError(message)
