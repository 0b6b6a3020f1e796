"""Make pm_context_new fail after llama_init_from_model has succeeded, many times, and report what leaked; run as
a child process by test_context_cleanup.py.

    python tests/context_leak_probe.py LIBRARY MODEL

The failure is real, not simulated: with the address space capped a few MB above what the process holds, the
llama context still fits but the first worker thread's stack does not, so ggml's thread pool asserts and
pm_context_new unwinds past a live context. Where that cap lies depends on how malloc kept the memory of earlier
contexts (held in the heap here, handed back in a CI run), so the probe searches for it: it raises the soft limit
in 1 MB steps (the hard limit stays as it was, so the soft one can go up again) until an attempt fails at the
thread start rather than for want of memory.
"""
import ctypes
import json
import resource
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "py"))

from pocketmind import Model, PocketmindError  # noqa: E402
from pocketmind.native import NativeBackend  # noqa: E402


class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]


libc = ctypes.CDLL(None)
libc.mallinfo2.restype = MallInfo2


def heap_in_use() -> int:
    info = libc.mallinfo2()
    return info.uordblks + info.hblkhd  # malloc'd bytes, from the heap and from mmap


def address_space() -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmSize:"))


def try_context(model: Model, threads: int) -> str:
    try:
        model.context(n_ctx=32, n_threads=threads).close()
        return "ok"
    except PocketmindError as e:
        return str(e)


UNCAPPED = resource.getrlimit(resource.RLIMIT_AS)


def cap_address_space(margin: int) -> None:
    resource.setrlimit(resource.RLIMIT_AS, (address_space() + margin, UNCAPPED[1]))


def uncap_address_space() -> None:
    resource.setrlimit(resource.RLIMIT_AS, UNCAPPED)


def is_thread_start(failure: str) -> bool:
    return "GGML_ASSERT(rc == 0)" in failure


backend = NativeBackend(sys.argv[1])
backend.call("pm_set_log_level", 0)
model = Model.from_file(sys.argv[2], backend)
for _ in range(3):  # leave the heap holding what a context needs (glibc keeps it after the first frees)
    try_context(model, 1)

before = heap_in_use()
tried = []
for megabytes in range(1, 129):  # a context of a tiny model needs ~20 MB, a thread stack 8 MB by default
    cap_address_space(megabytes << 20)
    tried.append(try_context(model, 4))
    uncap_address_space()
    if tried[-1] == "ok" or is_thread_start(tried[-1]):
        break
cap_address_space(megabytes << 20)
failures = tried + [try_context(model, 4) for _ in range(20)]
uncap_address_space()
leaked = heap_in_use() - before
print(json.dumps({"failures": failures, "margin_mb": megabytes, "leaked": leaked,
                  "one_thread_after": try_context(model, 1)}))
