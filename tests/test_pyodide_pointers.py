"""The Pyodide backend under CPython, with a stand-in for the wasm module: JS hands wasm32 pointers over as signed
numbers, so an address at or above 2 GiB arrives negative and must be made unsigned before it indexes the heap."""
from __future__ import annotations

import struct
import sys
import types

import numpy as np
import pytest

from pocketmind.engine import PocketmindError, check
from pocketmind.pyodide_backend import PyodideBackend

BASE = 0x9000_0000  # the stand-in heap's window: 2.25 GiB .. 2.25 GiB + 4 KiB
ERROR_AT, FLOATS_AT, BUFFER_AT = BASE, BASE + 256, BASE + 1024


def signed(address: int) -> int:
    """What JS sees when a wasm function returns this address."""
    return address - (1 << 32) if address >= 1 << 31 else address


class Window:
    """A typed-array stand-in that holds only [BASE, BASE + size) and refuses any other index (a real typed array
    would read from its end for a negative one, or return nothing)."""

    def __init__(self, memory: bytearray, itemsize: int):
        self.memory, self.itemsize = memory, itemsize

    def _span(self, start: int, end: int) -> slice:
        lo, hi = start * self.itemsize - BASE, end * self.itemsize - BASE
        assert 0 <= lo <= hi <= len(self.memory), f"index {start}..{end} outside the heap window"
        return slice(lo, hi)

    def slice(self, start, end):
        data = bytes(self.memory[self._span(start, end)])
        return types.SimpleNamespace(to_bytes=lambda: data)

    subarray = slice

    def set(self, data, offset):
        span = self._span(offset, offset + len(data))
        self.memory[span] = bytes(data)


class FloatWindow(Window):
    def subarray(self, start, end):
        values = np.frombuffer(bytes(self.memory[self._span(start, end)]), dtype=np.float32)

        def assign_to(out):
            out[:] = values

        return types.SimpleNamespace(assign_to=assign_to)


class FakeModule:
    def __init__(self):
        self.memory = bytearray(4096)
        self.memory[0:10] = b"bad thing\0"
        self.memory[256:256 + 12] = struct.pack("<3f", 1.5, -2.0, 3.25)
        self.HEAPU8 = Window(self.memory, 1)
        self.HEAPF32 = FloatWindow(self.memory, 4)

    def UTF8ToString(self, ptr):
        span = self.HEAPU8._span(ptr, ptr + 1)
        return bytes(self.memory[span.start:self.memory.index(0, span.start)]).decode()

    def _pm_last_error(self):
        return signed(ERROR_AT)

    def _pm_logits(self, ctx, i):
        return signed(FLOATS_AT)

    def _pm_buffer_alloc(self, size):
        return signed(BUFFER_AT)

    def _pm_decode(self, *args):
        return -4  # a status: must stay negative

    def _pm_model_n_params(self, model):
        return 3.0e9

    def __getattr__(self, name):
        if name.startswith("_pm_"):
            return lambda *args: 0
        raise AttributeError(name)


@pytest.fixture
def backend(monkeypatch):
    ffi = types.ModuleType("pyodide.ffi")
    ffi.to_js = lambda view: bytes(view)
    monkeypatch.setitem(sys.modules, "pyodide", types.ModuleType("pyodide"))
    monkeypatch.setitem(sys.modules, "pyodide.ffi", ffi)
    return PyodideBackend(FakeModule())


def test_pointer_results_are_unsigned_and_others_are_not(backend):
    assert backend.call("pm_buffer_alloc", 100) == BUFFER_AT
    assert backend.call("pm_logits", 1, -1) == FLOATS_AT
    assert backend.call("pm_last_error") == ERROR_AT
    assert backend.call("pm_decode", 1, 2, 3, 0, 0) == -4
    assert backend.call("pm_model_n_params", 1) == 3.0e9


def test_reads_and_writes_above_2_gib(backend):
    ptr = backend.call("pm_buffer_alloc", 16)
    backend.write(ptr, b"hello")
    backend.write(ptr + 8, np.array([7], dtype=np.int32))
    assert backend.read(ptr, 5) == b"hello"
    assert backend.read(ptr + 8, 4) == struct.pack("<i", 7)
    assert backend.float32_array(backend.call("pm_logits", 1, -1), 3).tolist() == [1.5, -2.0, 3.25]
    assert backend.read_cstring(backend.call("pm_last_error")) == "bad thing"
    # a pointer that reaches the backend signed (from another caller) means the same address
    assert backend.read(signed(ptr), 5) == b"hello"
    assert backend.float32_array(signed(FLOATS_AT), 2).tolist() == [1.5, -2.0]


def test_error_message_through_the_engine(backend):
    with pytest.raises(PocketmindError, match="bad thing") as err:
        check(backend, backend.call("pm_decode", 1, 2, 3, 0, 0))
    assert err.value.status_name == "DECODE"
