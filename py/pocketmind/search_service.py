"""What the Search page's worker calls: an embedding model, an index of the documents a person added, search, and
answers from the best passages with a chat model; JSON in and out.

Like TaskService, strings cross the JS bridge and long work advances one event per step(), so the worker can yield,
pass on a stop and draw progress. The same class runs under CPython with the native backend; every answer comes
from pocketmind.search (extraction, chunking, Embedder, Index, answer), which the command line uses too.

The contract with the page:

- `SearchService(n_ctx=2048, n_threads=1)`.
- `add_embedder_buffer(backend, buffer, size, sha256, name)` / `set_embedder(model, sha256, name)`: the embedding
  model (the buffer rule of engine.load_service: on success the model owns the buffer; on failure this raises and
  it is the caller's). sha256 is the model file's, as the model store verified it: an index records it. Returns the
  card as JSON. A second embedder replaces the first and empties the index.
- `add_chat_buffer(backend, buffer, size, name)` / `set_chat_model(model, name)`: the chat model for answers.
- `start_add(request_json, data=None)`: request {"files": [name, ...], "texts": [{"name", "text"}, ...]}, data
  the files in the same order (bytes, JS Uint8Arrays, or objects with .size and .read() that are read only when
  their size is within the limit, as the page's worker hands over dropped files). step() then gives
  {"type": "file", "name", "ok", "message", "n_chars", "n_chunks"} per document (a bad file: ok false and the
  extraction's message; the others are kept), {"type": "progress", "what": "embedding", "done", "total",
  "elapsed", "eta"} after each chunk (eta: seconds left at the speed so far, null before the first chunk),
  then {"type": "done", "stopped", "added", "total", "files": [name, ...], "skipped": [{name, message}],
  "n_chunks", "seconds"}. A stop keeps the chunks embedded so far; a document added again replaces its chunks.
- `search(request_json)`: {"query", "top" (default 5)} -> {"query", "hits": [{rank, score, source, start, end,
  text}], "n_tokens", "truncated_from"}; a query longer than the model's limit is cut and says so.
- `start_answer(request_json)`: {"question", "top" (default 5), "max_tokens" (default 256)}: searches, fits the top
  passages in the chat model's context (answer.fit_prompt) and streams like ChatService: {"type": "passages",
  "passages": [...], "n_trimmed", "n_left_out", "n_prompt_tokens"}, {"type": "prompt", ...}, {"type": "text",
  "text"}, then {"type": "done", "text", "cited": [n, ...], "passages", "n_trimmed", "n_left_out",
  finish_reason, ...}.
- `stop()`: an add ends before its next chunk, an answer at its next token.
- `export_index()`: the index as bytes (Index.to_bytes). `import_index(data)`: an index kept earlier; refused,
  with a message saying to add the files again, when it was made with another model. Returns info_json().
- `info_json()`: {"n_chunks", "sources", "model_sha256", "embedder", "chat", "n_chunks_embedded"}: the last is
  how many document chunks this service has embedded since it started (queries not counted).
- `clear()`: an empty index.
- `embed_json(texts_json)`: {"vectors": [[float, ...], ...]}, the unit embeddings of a JSON list of texts.
"""
from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import closing

import numpy as np

from .capi import Backend
from .engine import Context, Model, load_service
from .stepped_service import SteppedService
from .search import SearchError
from .search.answer import citations, fit_prompt
from .search.chunk import DEFAULT_MAX_CHARS, DEFAULT_OVERLAP, chunk_text
from .search.embed import Embedder
from .search.extract import check_size, extract_text
from .search.index import Index
from .search.indexer import embed_into

DEFAULT_TOP = 5
DEFAULT_ANSWER_TOKENS = 256
MAX_TOP = 50


class SearchService(SteppedService):
    def __init__(self, n_ctx: int = 2048, n_threads: int = 1):
        super().__init__()
        self.n_ctx, self.n_threads = n_ctx, n_threads
        self.embedder: Embedder | None = None
        self.embedder_card: dict | None = None
        self.index: Index | None = None
        self.chat_ctx: Context | None = None
        self.chat_card: dict | None = None
        self.n_chunks_embedded = 0

    # ---- models ----

    def add_embedder_buffer(self, backend: Backend, buffer: int, size: int, sha256: str, name: str) -> str:
        self._idle("loading a model")
        return load_service(lambda model: self.set_embedder(model, sha256, name), backend, buffer, size)

    def set_embedder(self, model: Model, sha256: str, name: str) -> str:
        """Take `model` as the embedding model (closed with the service); raises, taking nothing, if its
        embedding context fails."""
        self._idle("loading a model")
        if not isinstance(sha256, str) or len(sha256) != 64:
            raise ValueError("the embedding model needs its file's sha256 (64 hex digits)")
        embedder = Embedder(model, n_threads=self.n_threads)
        if self.embedder is not None:
            self.embedder.close()
            self.embedder.model.close()
        self.embedder = embedder
        self.embedder_card = {"name": name, "sha256": sha256, "dim": embedder.dim,
                              "max_tokens": embedder.max_tokens, **model.card()}
        self.index = Index(sha256, embedder.dim, name)
        return json.dumps(self.embedder_card, ensure_ascii=False)

    def add_chat_buffer(self, backend: Backend, buffer: int, size: int, name: str) -> str:
        self._idle("loading a model")
        return load_service(lambda model: self.set_chat_model(model, name), backend, buffer, size)

    def set_chat_model(self, model: Model, name: str) -> str:
        from .chat_template import ChatTemplate

        self._idle("loading a model")
        ChatTemplate.for_model(model)  # a template that does not compile fails the load, not the first answer
        size = min(self.n_ctx, model.n_ctx_train) if model.n_ctx_train > 0 else self.n_ctx
        ctx = model.context(n_ctx=size, n_batch=256, n_threads=self.n_threads)
        if self.chat_ctx is not None:
            self.chat_ctx.model.close()
        self.chat_ctx = ctx
        self.chat_card = {"name": name, "n_ctx": ctx.n_ctx, **model.card()}
        return json.dumps(self.chat_card, ensure_ascii=False)

    def close(self) -> None:
        self._events = None
        if self.embedder is not None:
            self.embedder.close()
            self.embedder.model.close()
            self.embedder = None
        if self.chat_ctx is not None:
            self.chat_ctx.model.close()
            self.chat_ctx = None

    def _idle(self, what: str) -> None:
        if self._events is not None:
            raise ValueError(f"an indexing run or answer is in progress: stop it before {what}")

    def _ready(self) -> tuple[Embedder, Index]:
        if self.embedder is None or self.index is None:
            raise ValueError("no embedding model is loaded")
        return self.embedder, self.index

    # ---- adding documents ----

    def start_add(self, request_json: str, data=None) -> None:
        self._idle("adding documents")
        self._ready()
        request = _request(request_json)
        names = request.get("files", [])
        texts = request.get("texts", [])
        if not isinstance(names, list) or not isinstance(texts, list):
            raise ValueError('"files" must be a list of file names and "texts" a list of {"name", "text"}')
        blobs = [] if data is None else list(data)  # read one at a time, once their size is checked
        if len(blobs) != len(names):
            raise ValueError(f"{len(names)} file names but {len(blobs)} files' bytes")
        if not names and not texts:
            raise ValueError("nothing to add: give files or a text")
        documents = [(str(n), b, None) for n, b in zip(names, blobs)]
        for t in texts:
            if not isinstance(t, dict) or not isinstance(t.get("text"), str):
                raise ValueError('each text must be {"name": ..., "text": ...}')
            documents.append((str(t.get("name") or "pasted text"), None, t["text"]))
        self._stop = False
        self._events = self._add(documents)

    def _add(self, documents) -> Iterator[dict]:
        embedder = self.embedder
        kept: dict[str, list] = {}  # file name -> its chunks; the same name twice in one add: the last, moved last
        skipped, cut = [], False
        for name, blob, text in documents:
            if self._stop:  # a Stop while the files are read ends the add before any embedding
                cut = True
                break
            try:
                if text is None:
                    check_size(name, _size(blob))
                    text = extract_text(name, _bytes(blob))
                elif not text.strip():
                    raise SearchError(f"{name}: the text is empty")
                mine = chunk_text(text, name, DEFAULT_MAX_CHARS, DEFAULT_OVERLAP)
            except SearchError as e:
                skipped.append({"name": name, "message": str(e)})
                yield {"type": "file", "name": name, "ok": False, "message": str(e), "n_chars": 0, "n_chunks": 0}
                continue
            kept.pop(name, None)
            kept[name] = mine
            yield {"type": "file", "name": name, "ok": True, "message": "", "n_chars": len(text),
                   "n_chunks": len(mine)}
        files = [] if cut else list(kept)
        chunks = [c for name in files for c in kept[name]]
        self._drop_sources(set(files))  # added again: the new text replaces the old chunks
        done_before = self.n_chunks_embedded
        total, done = len(chunks), 0
        t0 = time.perf_counter()
        yield {"type": "progress", "what": "embedding", "done": 0, "total": total, "elapsed": 0.0, "eta": None}
        with closing(embed_into(self.index, embedder, chunks, [])) as steps:  # a Stop closes it: the done stay
            for done in steps:
                self.n_chunks_embedded = done_before + done
                elapsed = time.perf_counter() - t0
                yield {"type": "progress", "what": "embedding", "done": done, "total": total,
                       "elapsed": elapsed, "eta": elapsed / done * (total - done)}
                if self._stop:
                    break
        index = self.index
        yield {"type": "done", "stopped": cut or done < total, "added": done, "total": total, "files": files,
               "skipped": skipped, "n_chunks": len(index), "seconds": time.perf_counter() - t0}

    def _drop_sources(self, names: set[str]) -> None:
        index = self.index
        keep = [i for i, c in enumerate(index.chunks) if c.source not in names]
        if len(keep) != len(index.chunks):
            self.index = Index(index.model_sha256, index.dim, index.model_name, [index.chunks[i] for i in keep],
                               index.vectors[keep])

    def clear(self) -> str:
        self._idle("clearing the index")
        embedder, index = self._ready()
        self.index = Index(index.model_sha256, index.dim, index.model_name)
        return self.info_json()

    # ---- searching ----

    def search(self, request_json: str) -> str:
        request = _request(request_json)
        found = self._search(request.get("query"), request.get("top", DEFAULT_TOP))
        found.pop("_chunks")
        return json.dumps(found, ensure_ascii=False)

    def _search(self, query, top) -> dict:
        embedder, index = self._ready()
        if not isinstance(query, str) or not query.strip():
            raise SearchError("the query is empty")
        if isinstance(top, bool) or not isinstance(top, int) or not 1 <= top <= MAX_TOP:
            raise ValueError(f"top must be a whole number from 1 to {MAX_TOP}, got {top!r}")
        if not len(index):
            raise SearchError("the index is empty: add some documents first")
        embedded = embedder.embed_one(query)
        hits = index.search(embedded.vector, top)
        return {"query": query, "n_tokens": embedded.n_tokens, "truncated_from": embedded.truncated_from,
                "hits": [{"rank": h.rank, "score": h.score, **h.chunk.to_json()} for h in hits],
                "_chunks": [h.chunk for h in hits]}

    def embed_json(self, texts_json: str) -> str:
        """{"vectors": [[...], ...]}: the unit embedding of each text in a JSON list (what the index holds)."""
        texts = json.loads(texts_json)
        if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
            raise ValueError("embed_json takes a JSON list of texts")
        if self.embedder is None:
            raise SearchError("no embedding model is loaded")
        return json.dumps({"vectors": self.embedder.embed(texts).tolist()})

    # ---- answers ----

    def start_answer(self, request_json: str) -> None:
        from .generate import ChatSession
        from .sampling import GREEDY

        self._idle("answering")
        if self.chat_ctx is None:
            raise ValueError("no chat model is loaded")
        request = _request(request_json)
        max_tokens = request.get("max_tokens", DEFAULT_ANSWER_TOKENS)
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
            raise ValueError(f"max_tokens must be a positive whole number, got {max_tokens!r}")
        question = request.get("question")
        found = self._search(question, request.get("top", DEFAULT_TOP))
        session = ChatSession(self.chat_ctx)
        n_ctx = self.chat_ctx.n_ctx
        max_tokens = min(max_tokens, n_ctx // 2)
        prompt = fit_prompt(question, found["_chunks"], lambda messages: len(session.prompt_tokens(messages)),
                            n_ctx - max_tokens)
        self._stop = False
        events = session.chat(prompt.messages, GREEDY, max_tokens=max_tokens, abort=lambda: self._stop,
                              progress=True)
        self._events = self._answer(prompt, events)

    def _answer(self, prompt, events) -> Iterator[dict]:
        from .generate import Chunk, Done, Prefill

        passages = [p.to_json() for p in prompt.passages]
        yield {"type": "passages", "passages": passages, "n_trimmed": prompt.n_trimmed,
               "n_left_out": prompt.n_left_out, "n_prompt_tokens": prompt.n_tokens}
        for event in events:
            if isinstance(event, Prefill):
                yield {"type": "prompt", "decoded": event.decoded, "total": event.total}
            elif isinstance(event, Chunk):
                yield {"type": "text", "text": event.text}
            elif isinstance(event, Done):
                yield {"type": "done", "text": event.text, "cited": citations(event.text, len(passages)),
                       "passages": passages, "n_trimmed": prompt.n_trimmed, "n_left_out": prompt.n_left_out,
                       "n_prompt_tokens": prompt.n_tokens, "finish_reason": event.finish_reason,
                       "n_generated": event.n_generated, "generation_tokens_per_s": event.generation_tokens_per_s}

    # ---- running ----

    def run(self, start) -> list[dict]:
        """Every event of a started add or answer (for tests and non-streaming callers)."""
        start()
        out = []
        while (event := self.step()) is not None:
            out.append(json.loads(event))
        return out

    # ---- keeping the index ----

    def export_index(self) -> bytes:
        embedder, index = self._ready()
        return index.to_bytes()

    def import_index(self, data) -> str:
        self._idle("loading an index")
        embedder, current = self._ready()
        index = Index.from_bytes(_bytes(data), "the stored index")
        if index.model_sha256 != current.model_sha256:
            raise SearchError(f"the stored index was made with another embedding model (sha256 "
                              f"{index.model_sha256[:12]}…, now {current.model_sha256[:12]}…); add the documents "
                              "again to search them with this model")
        if index.dim != current.dim:
            raise SearchError(f"the stored index has dimension {index.dim}, the model {current.dim}")
        self.index = index
        return self.info_json()

    def info_json(self) -> str:
        index = self.index
        return json.dumps({"n_chunks": len(index) if index is not None else 0,
                           "sources": index.sources() if index is not None else [],
                           "model_sha256": index.model_sha256 if index is not None else None,
                           "embedder": self.embedder_card, "chat": self.chat_card,
                           "n_chunks_embedded": self.n_chunks_embedded}, ensure_ascii=False)


def _request(request_json: str) -> dict:
    request = json.loads(request_json)
    if not isinstance(request, dict):
        raise ValueError("the request must be a JSON object")
    return request


def _size(data) -> int:
    """A document's byte count, before it is read: see _bytes for what a document can be."""
    return int(data.size) if hasattr(data, "read") else len(data)


def _bytes(data) -> bytes:
    """Bytes from Python bytes-likes, a Pyodide JsProxy of a Uint8Array, or a file read only now (anything with
    .size and .read(), as the page's worker hands over dropped files)."""
    if hasattr(data, "read"):
        data = data.read()
    return bytes(data.to_bytes() if hasattr(data, "to_bytes") else data)
