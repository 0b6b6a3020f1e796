"""The C API's signatures (wasm/pocketmind.h) in one table, and the seam every backend implements.

SIGNATURES is the one list of C functions: wasm/build.py exports exactly these from the wasm modules, and
tests/test_capi_table.py checks that the header declares the same functions with the same types.

A backend knows how to call a C function with integer/pointer arguments and how to move bytes in and out of the
library's memory; everything else (validation, buffer retries, numpy views) lives once in engine.py.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:  # for annotations only: wasm/build.py loads this file without numpy's import cost
    import numpy as np

# name -> (return type, argument types); "i" int32, "p" pointer (also size_t), "d" double, "v" void
SIGNATURES: dict[str, tuple[str, str]] = {
    "pm_last_error": ("p", ""),
    "pm_version": ("p", ""),
    "pm_set_log_level": ("v", "i"),
    "pm_buffer_alloc": ("p", "p"),
    "pm_buffer_free": ("v", "p"),
    "pm_model_load_file": ("i", "pp"),
    "pm_model_load_buffer": ("i", "ppp"),
    "pm_model_free": ("v", "p"),
    "pm_model_n_vocab": ("i", "p"),
    "pm_model_n_ctx_train": ("i", "p"),
    "pm_model_n_embd": ("i", "p"),
    "pm_model_n_params": ("d", "p"),
    "pm_model_size": ("d", "p"),
    "pm_model_token_bos": ("i", "p"),
    "pm_model_token_eos": ("i", "p"),
    "pm_model_token_eot": ("i", "p"),
    "pm_model_add_bos": ("i", "p"),
    "pm_model_is_eog": ("i", "pi"),
    "pm_model_meta_count": ("i", "p"),
    "pm_model_meta_key": ("i", "pipip"),
    "pm_model_meta_value": ("i", "pipip"),
    "pm_model_meta_get": ("i", "pppip"),
    "pm_model_desc": ("i", "ppip"),
    "pm_model_chat_template": ("i", "pp"),
    "pm_adapter_load_file": ("i", "ppp"),
    "pm_adapter_load_buffer": ("i", "pppp"),
    "pm_adapter_free": ("v", "p"),
    "pm_adapter_meta_get": ("i", "pppip"),
    "pm_context_set_adapters": ("i", "pppi"),
    "pm_tokenize": ("i", "ppiiipip"),
    "pm_token_bytes": ("i", "piipip"),
    "pm_context_new": ("i", "piiiip"),
    "pm_context_free": ("v", "p"),
    "pm_context_n_ctx": ("i", "p"),
    "pm_context_n_batch": ("i", "p"),
    "pm_decode": ("i", "ppiii"),
    "pm_decode_one": ("i", "pii"),
    "pm_logits": ("p", "pi"),
    "pm_argmax": ("i", "pi"),
    "pm_kv_remove": ("i", "pii"),
    "pm_kv_clear": ("v", "p"),
    "pm_kv_pos_max": ("i", "p"),
    "pm_embeddings": ("i", "pppip"),
    "pm_model_convert": ("i", "pppi"),
    "pm_model_source": ("i", "pp"),
    "pm_model_load_trainable": ("i", "pp"),
    "pm_trainer_new": ("i", "piiip"),
    "pm_trainer_free": ("v", "p"),
    "pm_trainer_n_params": ("d", "p"),
    "pm_trainer_step": ("i", "pppiddp"),
    "pm_trainer_checkpoint": ("i", "pi"),
    "pm_trainer_write": ("i", "pp"),
}

STATUS_NAMES = {
    0: "OK",
    -1: "INVALID_ARGUMENT",
    -2: "LOAD",
    -3: "CONTEXT",
    -4: "DECODE",
    -5: "TOKEN",
    -6: "NO_SPACE",
    -7: "BUFFER_TOO_SMALL",
    -8: "NOT_FOUND",
    -9: "INTERNAL",
}
BUFFER_TOO_SMALL = -7
NOT_FOUND = -8
CONTEXT_EMBEDDINGS = 1
CONTEXT_KV_F32 = 2
EMBEDDINGS_MAX_SEQS = 64  # texts one pm_embeddings call takes (the header's PM_EMBEDDINGS_MAX_SEQS)


class Backend(Protocol):
    """How to reach the C API in one runtime (CPython ctypes, Pyodide's JS bridge)."""

    name: str
    max_threads: int
    pointer_size: int  # 8 natively, 4 in wasm32
    arrays_are_views: bool  # float32_array returns a view on the library's memory (no copy)

    def call(self, fn: str, *args: int | float) -> int | float:
        """Call a C API function with ints (pointers are ints); returns its int/pointer/double result."""

    def write(self, ptr: int, data: bytes | np.ndarray) -> None:
        """Copy bytes (or an array's bytes) into library memory at ptr."""

    def read(self, ptr: int, size: int) -> bytes:
        """Copy size bytes out of library memory."""

    def read_cstring(self, ptr: int) -> str:
        """A NUL-terminated UTF-8 string in library memory."""

    def float32_array(self, ptr: int, count: int) -> np.ndarray:
        """count float32 values at ptr as a numpy array (a view where the runtime allows, else one copy)."""

    # The file system the C API reads and writes paths in: natively the OS's, in Pyodide the wasm module's own
    # (Emscripten's in-memory one, which Python's open() does not see).
    def remove_file(self, path: str) -> None:
        """Remove a file; nothing happens if it is missing."""

    def rename_file(self, src: str, dst: str) -> None:
        """Move a file to dst, replacing what is there."""
