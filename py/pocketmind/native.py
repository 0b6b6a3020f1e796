"""The native backend: the C API built as a shared library (build/native/libpocketmind.so), called with ctypes."""
from __future__ import annotations

import ctypes
import os
from functools import lru_cache
from pathlib import Path

import numpy as np

from .capi import SIGNATURES

_CTYPES = {"i": ctypes.c_int32, "p": ctypes.c_void_p, "d": ctypes.c_double, "v": None}


def default_library_path() -> Path:
    """$POCKETMIND_NATIVE_LIB, else build/native/libpocketmind.so in the source checkout."""
    env = os.environ.get("POCKETMIND_NATIVE_LIB")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / "build" / "native" / "libpocketmind.so"


class NativeBackend:
    name = "native"
    max_threads = 64
    pointer_size = ctypes.sizeof(ctypes.c_void_p)
    arrays_are_views = True  # float32_array returns a view: no copy

    def __init__(self, path: str | os.PathLike | None = None):
        path = Path(path) if path else default_library_path()
        if not path.exists():
            raise FileNotFoundError(f"{path} is missing: build it with `python wasm/build.py native`")
        self.lib = ctypes.CDLL(str(path))
        self._fns = {}
        for name, (restype, argtypes) in SIGNATURES.items():
            fn = getattr(self.lib, name)
            fn.restype = _CTYPES[restype]
            fn.argtypes = [_CTYPES[a] for a in argtypes]
            self._fns[name] = fn

    def call(self, fn: str, *args):
        result = self._fns[fn](*args)
        return 0 if result is None and SIGNATURES[fn][0] == "p" else result

    def write(self, ptr: int, data) -> None:
        if isinstance(data, np.ndarray):
            data = np.ascontiguousarray(data)
            ctypes.memmove(ptr, data.ctypes.data, data.nbytes)
        else:
            data = bytes(data)  # no copy for bytes
            ctypes.memmove(ptr, data, len(data))

    def read(self, ptr: int, size: int) -> bytes:
        return ctypes.string_at(ptr, size)

    def read_cstring(self, ptr: int) -> str:
        return ctypes.string_at(ptr).decode("utf-8", errors="replace")

    def remove_file(self, path: str) -> None:
        Path(path).unlink(missing_ok=True)

    def rename_file(self, src: str, dst: str) -> None:
        os.replace(src, dst)

    def float32_array(self, ptr: int, count: int) -> np.ndarray:
        # a view on the library's memory: no copy
        return np.ctypeslib.as_array(ctypes.cast(ptr, ctypes.POINTER(ctypes.c_float)), shape=(count,))


@lru_cache(maxsize=None)
def backend(path: str | None = None) -> NativeBackend:
    """One loaded library per path for the whole process."""
    return NativeBackend(path)
