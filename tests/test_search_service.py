"""The Search page's service under CPython: files in (bad ones reported and skipped), chunks embedded step by step
with progress and an ETA, search equal to the index/search modules the CLI uses, the index kept as bytes and refused
under another model, a stop that keeps what was embedded, and answers from the passages with their citations."""
from __future__ import annotations

import json

import pytest

import deps
from pocketmind import Model
from pocketmind.search import SearchError
from pocketmind.search.answer import MIN_TRIMMED_CHARS, citations, fit_prompt, messages_for
from pocketmind.search.chunk import Chunk
from pocketmind.search.embed import Embedder
from pocketmind.search.index import file_sha256
from pocketmind.search.indexer import IndexBuild
from pocketmind.search.extract import extract_text
from pocketmind.search_service import SearchService
from search_corpus import FILES

BAD = {"image.txt": b"\x89PNG\r\n\x1a\n\0\0\0", "latin1.md": "café".encode("latin-1"), "empty.txt": b"  \n"}


@pytest.fixture(scope="module")
def minilm():
    return deps.minilm_gguf("Q8_0")


@pytest.fixture()
def service(native, minilm):
    s = SearchService()
    s.set_embedder(Model.from_file(minilm, native), file_sha256(minilm), "all-MiniLM-L6-v2.Q8_0")
    yield s
    s.close()


def add(service, files: dict, texts=()) -> list[dict]:
    request = json.dumps({"files": list(files), "texts": list(texts)})
    return service.run(lambda: service.start_add(request, [v if isinstance(v, bytes) else v.encode()
                                                           for v in files.values()]))


def test_add_reports_each_file_embeds_with_progress_and_skips_bad_files(service):
    events = add(service, {**FILES, **BAD})
    files = [e for e in events if e["type"] == "file"]
    assert [f["name"] for f in files] == list(FILES) + list(BAD)
    assert all(f["ok"] for f in files[:3]) and not any(f["ok"] for f in files[3:])
    messages = {f["name"]: f["message"] for f in files[3:]}
    assert "binary" in messages["image.txt"] and "not UTF-8" in messages["latin1.md"] and "empty" in messages["empty.txt"]
    progress = [e for e in events if e["type"] == "progress"]
    total = sum(f["n_chunks"] for f in files)
    steps = [p["done"] for p in progress]  # one event per batch of chunks the embedder decodes together
    assert steps[0] == 0 and steps[-1] == total and steps == sorted(set(steps))
    assert {p["total"] for p in progress} == {total}
    assert progress[0]["eta"] is None and progress[-1]["eta"] == 0
    assert all(p["eta"] >= 0 and p["elapsed"] >= 0 for p in progress[1:])
    done = events[-1]
    assert done["type"] == "done" and not done["stopped"] and done["added"] == done["n_chunks"] == total
    assert done["files"] == list(FILES) and [s["name"] for s in done["skipped"]] == list(BAD)
    assert json.loads(service.info_json())["n_chunks_embedded"] == total


class DroppedFile:
    """A file as the page's worker hands it over: a size at once, the bytes when read() is called (counted)."""

    def __init__(self, data: bytes, size: int | None = None):
        self.data, self.size, self.reads = data, len(data) if size is None else size, 0

    def read(self) -> bytes:
        self.reads += 1
        if self.size != len(self.data):
            raise AssertionError("an over-size file was read")
        return self.data


def test_an_over_size_file_is_refused_by_its_size_and_the_others_are_kept(service):
    names = ["huge.txt", "small.txt"]
    huge, small = DroppedFile(b"", size=200 * 1024 * 1024), DroppedFile(b"A small note.")
    events = service.run(lambda: service.start_add(json.dumps({"files": names}), [huge, small]))
    files = [e for e in events if e["type"] == "file"]
    assert not files[0]["ok"] and "209,715,200 bytes is over the" in files[0]["message"] and files[1]["ok"]
    assert events[-1]["files"] == ["small.txt"] and len(service.index) == 1
    assert (huge.reads, small.reads) == (0, 1)


def test_ten_thousand_small_files_each_get_their_event_and_a_stop_keeps_the_first_batches(service):
    notes = [DroppedFile(f"Note {i}: parcel {i} left the depot on day {i % 28 + 1}.".encode()) for i in range(10_000)]
    service.start_add(json.dumps({"files": [f"note-{i}.txt" for i in range(10_000)]}), notes)
    events = []
    while (event := service.step()) is not None:
        events.append(json.loads(event))
        if events[-1]["type"] == "progress" and events[-1]["done"] >= 128:
            service.stop()
    done = events[-1]
    assert sum(e["type"] == "file" and e["ok"] for e in events) == 10_000 and {n.reads for n in notes} == {1}
    assert done["stopped"] and 128 <= done["added"] < done["total"] == 10_000 and len(service.index) == done["added"]
    assert service.index.chunks[0].source == "note-0.txt"


def test_a_stop_while_files_are_read_reads_no_more_and_embeds_nothing(service):
    notes = [DroppedFile(f"Note {i}.".encode()) for i in range(50)]
    service.start_add(json.dumps({"files": [f"note-{i}.txt" for i in range(50)]}), notes)
    events = []
    while (event := service.step()) is not None:
        events.append(json.loads(event))
        if len(events) == 10:
            service.stop()
    assert [n.reads for n in notes] == [1] * 10 + [0] * 40
    assert events[-1]["stopped"] and events[-1]["added"] == 0 and events[-1]["files"] == [] and not len(service.index)


def test_search_ranks_like_the_cli_modules(service, native, minilm):
    add(service, FILES)
    found = json.loads(service.search(json.dumps({"query": "an eruption in Italy", "top": 3})))
    assert found["hits"][0]["source"] == "volcanoes.md"
    # the CLI's path: extract, IndexBuild (chunk + embed), Index.search
    model = Model.from_file(minilm, native)
    with Embedder(model) as embedder:
        build = IndexBuild(embedder, file_sha256(minilm))
        list(build.add([(name, extract_text(name, text.encode())) for name, text in FILES.items()]))
        hits = build.index.search(embedder.embed_one("an eruption in Italy").vector, 3)
    model.close()
    assert [(h["source"], h["start"], h["end"]) for h in found["hits"]] == \
        [(h.chunk.source, h.chunk.start, h.chunk.end) for h in hits]
    assert [h["score"] for h in found["hits"]] == pytest.approx([h.score for h in hits], abs=1e-6)
    hit = found["hits"][0]
    assert hit["text"] == extract_text(hit["source"], FILES[hit["source"]].encode())[hit["start"]:hit["end"]]


def test_index_bytes_round_trip_and_another_model_is_refused(service, native, minilm):
    add(service, FILES, [{"name": "note", "text": "The meeting moved to Thursday."}])
    query = json.dumps({"query": "when is the meeting", "top": 2})
    before = json.loads(service.search(query))
    data = service.export_index()
    fresh = SearchService()
    fresh.set_embedder(Model.from_file(minilm, native), file_sha256(minilm), "all-MiniLM-L6-v2.Q8_0")
    info = json.loads(fresh.import_index(data))
    assert info["n_chunks"] == len(service.index) and "note" in info["sources"]
    assert json.loads(fresh.search(query)) == before and before["hits"][0]["source"] == "note"
    assert json.loads(fresh.info_json())["n_chunks_embedded"] == 0  # searched without embedding a document
    fresh.close()
    other = SearchService()
    other.set_embedder(Model.from_file(deps.minilm_gguf("F16"), native), "f" * 64, "F16")
    with pytest.raises(SearchError, match="another embedding model.*add the documents again"):
        other.import_index(data)
    assert len(other.index) == 0
    with pytest.raises(SearchError, match="not a pocketmind index"):
        other.import_index(b"garbage")
    other.close()


def test_a_stop_keeps_what_was_embedded_and_adding_again_replaces(service):
    text = "\n\n".join(f"Paragraph {i} talks about topic number {i} at some length, " * 8 for i in range(30))
    request = json.dumps({"texts": [{"name": "long", "text": text}]})
    service.start_add(request)
    events, stopped_at = [], None
    while (event := service.step()) is not None:
        events.append(json.loads(event))
        if stopped_at is None and events[-1]["type"] == "progress" and events[-1]["done"] > 0:
            stopped_at = events[-1]["done"]  # after the first batch
            service.stop()
    done = events[-1]
    assert done["stopped"] and done["added"] == stopped_at < done["total"] and len(service.index) == stopped_at
    service.run(lambda: service.start_add(request))
    assert len(service.index) == done["total"]  # the partial chunks were replaced, not kept twice
    with pytest.raises(SearchError, match="query is empty"):
        service.search(json.dumps({"query": "  "}))


def test_a_query_longer_than_the_model_says_it_was_cut(service):
    add(service, FILES)
    found = json.loads(service.search(json.dumps({"query": "bread " * 2000})))
    assert found["truncated_from"] > found["n_tokens"] == service.embedder.max_tokens


# ---- answers ----

def chunk(text: str, source: str = "doc.txt") -> Chunk:
    return Chunk(source, 0, len(text), text)


def test_fit_prompt_keeps_whole_passages_then_trims_one_and_leaves_out_the_rest():
    count = lambda messages: sum(len(m["content"].split()) for m in messages)  # noqa: E731 - one word, one token
    passages = [chunk(" ".join(f"w{i}" for i in range(100))) for _ in range(4)]
    base = count(messages_for("what?", []))
    prompt = fit_prompt("what?", passages, count, base + 2 * 104 + 60)
    assert [p.number for p in prompt.passages] == [1, 2, 3]
    assert [p.trimmed for p in prompt.passages] == [False, False, True]
    assert prompt.n_trimmed == 1 and prompt.n_left_out == 1
    assert len(prompt.passages[2].text) >= MIN_TRIMMED_CHARS and passages[2].text.startswith(prompt.passages[2].text)
    assert prompt.n_tokens == count(prompt.messages) <= base + 2 * 104 + 60
    assert prompt.messages[-1]["content"].count("\n[3] ") == 1 and "[4]" not in prompt.messages[-1]["content"]
    small = fit_prompt("what?", passages, count, base + 104 + 5)  # no room for a useful cut
    assert len(small.passages) == 1 and small.n_trimmed == 0 and small.n_left_out == 3
    with pytest.raises(SearchError, match="question alone"):
        fit_prompt("what?", passages, count, base - 1)


def test_citations_are_parsed_and_invalid_numbers_ignored():
    assert citations("Etna [2] erupts [1, 3]; see [2] and [9] and [0].", 3) == [2, 1, 3]
    assert citations("no citations here", 3) == []
    assert citations("[1;2]", 1) == [1]


def test_an_answer_streams_and_cites_valid_passages(service, native, smollm2):
    service.set_chat_model(Model.from_file(smollm2, native), "SmolLM2-135M-Instruct.Q4_1")
    add(service, FILES)
    request = json.dumps({"question": "Which volcano is in Sicily?", "top": 3, "max_tokens": 64})
    events = service.run(lambda: service.start_answer(request))
    passages = events[0]
    assert passages["type"] == "passages" and len(passages["passages"]) == 3
    assert passages["passages"][0]["source"] == "volcanoes.md" and "Etna" in passages["passages"][0]["text"]
    text = "".join(e["text"] for e in events if e["type"] == "text")
    done = events[-1]
    assert done["type"] == "done" and done["text"] == text and text.strip()
    assert done["cited"] == citations(text, 3) and all(1 <= n <= 3 for n in done["cited"])
    assert {"prompt"} <= {e["type"] for e in events}


def test_an_answer_in_a_small_context_trims_passages_and_says_so(native, minilm, smollm2):
    service = SearchService(n_ctx=512)
    service.set_embedder(Model.from_file(minilm, native), file_sha256(minilm), "all-MiniLM-L6-v2.Q8_0")
    service.set_chat_model(Model.from_file(smollm2, native), "SmolLM2-135M-Instruct.Q4_1")
    long = {f"notes{i}.txt": "\n\n".join(f"Note {i}.{j}: the harbour master logs ships, tides and storms "
                                         "in a paper book every evening." for j in range(12)) for i in range(4)}
    add(service, long)
    events = service.run(lambda: service.start_answer(json.dumps({"question": "What does the harbour master log?",
                                                                  "top": 4, "max_tokens": 32})))
    passages = events[0]
    assert passages["n_trimmed"] + passages["n_left_out"] >= 1
    assert len(passages["passages"]) + passages["n_left_out"] == 4
    assert passages["n_prompt_tokens"] <= 512 - 32
    done = events[-1]
    assert done["type"] == "done" and done["n_trimmed"] == passages["n_trimmed"]
    assert done["n_left_out"] == passages["n_left_out"]
    service.close()
