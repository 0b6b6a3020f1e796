"""The chat page's service under CPython: buffer ownership, long chats, prompt progress and stop, sampling defaults."""
from __future__ import annotations

import gc
import json
import subprocess
import sys
from pathlib import Path

import pytest

from pocketmind import Model
from pocketmind.chat_service import ChatService
from tiny_gguf import write_tiny_llama

REPO = Path(__file__).resolve().parents[1]
QUESTION = [{"role": "user", "content": "what is the word"}]
GREEDY_REQUEST = {"messages": QUESTION, "max_tokens": 16, "settings": {"temperature": 0}}


class CountingBackend:
    """The native backend, with a ledger of pm_buffer_alloc/pm_buffer_free: a free of memory that is not allocated
    (a double free, or a free of someone else's pointer) is recorded and NOT passed on, so the test can fail
    instead of the process crashing. (Raising would not do: a free from __del__ has its exceptions swallowed.)"""

    def __init__(self, inner):
        self.inner = inner
        self.name, self.max_threads, self.pointer_size = inner.name, inner.max_threads, inner.pointer_size
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


def load_like_the_worker(backend: CountingBackend, path: Path, **kwargs):
    """What chat-worker.js does: copy the GGUF into library memory, hand it to ChatService.from_buffer, and free it
    itself if that fails. Returns (service or None, error message or None)."""
    data = path.read_bytes()
    buffer = backend.call("pm_buffer_alloc", len(data))
    backend.write(buffer, data)
    try:
        return ChatService.from_buffer(backend, buffer, len(data), **kwargs), None
    except Exception as e:
        message = str(e)  # the exception (and the frames its traceback holds) must not outlive this block
    backend.call("pm_buffer_free", buffer)
    return None, message


@pytest.fixture(scope="module")
def bad_template_model(tmp_path_factory) -> Path:
    return write_tiny_llama(tmp_path_factory.mktemp("bad") / "bad-template.gguf", "F32", chat_template="{% for %}")


def fresh_process_answer(native, path: Path, request: dict) -> dict:
    script = (f"import json, sys; sys.path.insert(0, {str(REPO / 'py')!r}); from pocketmind import Model, native; "
              "from pocketmind.chat_service import ChatService; "
              f"m = Model.from_file({str(path)!r}, native.backend({native.lib._name!r})); "
              f"print(json.dumps(ChatService(m, n_ctx=256).answer({json.dumps(request)!r})))")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True)
    return json.loads(out.stdout)


@pytest.mark.parametrize("case", ["bad template", "context refused"])
def test_a_failed_load_leaves_the_buffer_to_the_caller_and_frees_nothing_twice(native, tiny_models,
                                                                             bad_template_model, case):
    backend = CountingBackend(native)
    if case == "bad template":
        service, error = load_like_the_worker(backend, bad_template_model, n_ctx=256)
        assert "the model's chat template does not compile" in error
    else:
        service, error = load_like_the_worker(backend, tiny_models["F32"], n_ctx=256, n_threads=0)
        assert "n_threads 0 is outside" in error
    assert service is None
    gc.collect()  # an orphaned Model would free the buffer again here
    assert backend.bad_frees == [] and backend.live == set()

    # the same process then loads a good model and answers exactly as a fresh process does
    service, error = load_like_the_worker(backend, tiny_models["F32"], n_ctx=256)
    assert error is None and service.model.owns_buffer
    answer = service.answer(json.dumps(GREEDY_REQUEST))
    service.close()
    gc.collect()
    assert backend.bad_frees == [] and backend.live == set()
    expected = fresh_process_answer(native, tiny_models["F32"], GREEDY_REQUEST)
    assert answer["text"] == expected["text"] and answer["done"]["tokens"] == expected["done"]["tokens"]


def test_a_successful_load_gives_the_buffer_to_the_model(native, tiny_models):
    backend = CountingBackend(native)
    service, error = load_like_the_worker(backend, tiny_models["F32"], n_ctx=256)
    assert error is None and service.model.owns_buffer
    assert len(backend.live) >= 1
    service.close()
    service.close()  # twice: nothing more is freed
    del service
    gc.collect()
    assert backend.bad_frees == [] and backend.live == set()


def test_model_from_bytes_frees_its_buffer_once(native, tiny_models):
    backend = CountingBackend(native)
    model = Model.from_bytes(tiny_models["F32"].read_bytes(), backend)
    assert model.owns_buffer
    model.close()
    del model
    with pytest.raises(Exception, match="(?i)load|gguf|model"):
        Model.from_bytes(b"GGUF" + b"\0" * 60, backend)
    gc.collect()
    assert backend.bad_frees == [] and backend.live == set()
