"""The Pyodide backend: the same C API, reached through Pyodide's bridge to the pocketmind wasm module that lives
in the same Web Worker. It only moves calls and bytes; everything else is engine.py's."""
from __future__ import annotations

import numpy as np

from .capi import SIGNATURES
from .memory import WASM_MAX_BYTES

# JS sees a wasm32 i32 result as a signed number: an address at or above 2 GiB (memory grows to 4 GiB) arrives
# negative. Pointers are made unsigned where they leave the module and wherever one is used to index the heap.
_U32 = 0xFFFFFFFF


class PyodideBackend:
    name = "pyodide"
    pointer_size = 4  # wasm32
    arrays_are_views = False  # float32_array copies out of the module's memory

    def __init__(self, module, max_threads: int = 1):
        """module: the JS object createPocketmind() resolved to (a JsProxy)."""
        self.M = module
        self.max_threads = max_threads
        self._fns = {name: getattr(module, "_" + name) for name in SIGNATURES}
        self._returns_pointer = {name for name, (ret, _) in SIGNATURES.items() if ret == "p"}
        self._floats: dict[int, np.ndarray] = {}  # one reused array per size: logits are read every token

    def call(self, fn: str, *args):
        result = self._fns[fn](*args)
        if result is None:
            return 0
        return result & _U32 if fn in self._returns_pointer else result

    # The heap views are looked up on every use: a grown memory replaces them.
    def write(self, ptr: int, data) -> None:
        from pyodide.ffi import to_js

        if isinstance(data, np.ndarray):
            data = np.ascontiguousarray(data).view(np.uint8).data
        self.M.HEAPU8.set(to_js(memoryview(data).cast("B")), ptr & _U32)

    def read(self, ptr: int, size: int) -> bytes:
        # slice, not subarray: a copy the bridge can hand over even when the memory is shared
        ptr &= _U32  # a negative start would count from the end of the heap
        return self.M.HEAPU8.slice(ptr, ptr + size).to_bytes()

    def read_cstring(self, ptr: int) -> str:
        return self.M.UTF8ToString(ptr & _U32)

    def heap_room(self) -> int:
        """Bytes the module's memory can still grow by (wasm32: 4 GiB at most; free space inside the heap is not
        counted, so this errs low)."""
        return WASM_MAX_BYTES - int(self.M.HEAPU8.length)

    # the module's own file system (MEMFS), where the C API reads and writes paths
    def remove_file(self, path: str) -> None:
        if self.M.FS.analyzePath(str(path)).exists:
            self.M.FS.unlink(str(path))

    def rename_file(self, src: str, dst: str) -> None:
        self.M.FS.rename(str(src), str(dst))

    def float32_array(self, ptr: int, count: int) -> np.ndarray:
        """One copy, straight from wasm memory into a numpy array that is reused for the next read of the same
        size (like the native backend's view, it is valid until the next decode)."""
        out = self._floats.get(count)
        if out is None:
            out = self._floats[count] = np.empty(count, dtype=np.float32)
        start = (ptr & _U32) >> 2
        self.M.HEAPF32.subarray(start, start + count).assign_to(out)
        return out
