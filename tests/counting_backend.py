"""A backend that keeps a ledger of model buffers, and a load done the way the workers do it: shared by the tests
of every service's from_buffer (the buffer rule is the same for all of them)."""
from __future__ import annotations

from pathlib import Path


class CountingBackend:
    """The native backend, with a ledger of pm_buffer_alloc/pm_buffer_free: a free of memory that is not allocated
    (a double free, or a free of someone else's pointer) is recorded and NOT passed on, so the test can fail
    instead of the process crashing. (Raising would not do: a free from __del__ has its exceptions swallowed.)"""

    def __init__(self, inner):
        self.inner = inner
        self.name, self.max_threads, self.pointer_size = inner.name, inner.max_threads, inner.pointer_size
        self.arrays_are_views = inner.arrays_are_views
        self.live: set[int] = set()
        self.bad_frees: list[int] = []

    def call(self, fn, *args):
        if fn == "pm_buffer_free":
            if args[0] not in self.live:
                self.bad_frees.append(args[0])
                return None
            self.live.remove(args[0])
        result = self.inner.call(fn, *args)
        if fn == "pm_buffer_alloc" and result:
            self.live.add(int(result))
        return result

    def __getattr__(self, name):
        return getattr(self.inner, name)


def load_like_the_worker(service_cls, backend: CountingBackend, path: Path, **kwargs):
    """What a worker does: copy the GGUF into library memory, hand it to service_cls.from_buffer, and free it
    itself if that fails. Returns (service or None, error message or None)."""
    data = path.read_bytes()
    buffer = backend.call("pm_buffer_alloc", len(data))
    backend.write(buffer, data)
    try:
        return service_cls.from_buffer(backend, buffer, len(data), **kwargs), None
    except Exception as e:
        message = str(e)  # the exception (and the frames its traceback holds) must not outlive this block
    backend.call("pm_buffer_free", buffer)
    return None, message


def refused_load(service_cls, backend: CountingBackend, path: Path, **kwargs) -> str:
    """A load the worker's way that must fail: its message, once it is clear that the buffer was freed exactly once
    (by the caller) and nothing leaked."""
    import gc

    service, error = load_like_the_worker(service_cls, backend, path, **kwargs)
    assert service is None and error
    gc.collect()  # an orphaned Model would free the buffer again here
    assert backend.bad_frees == [] and backend.live == set()
    return error
