"""Paragraph chunking: exact offsets, whole paragraphs, overlap between neighbours, long paragraphs windowed."""
from __future__ import annotations

import pytest

from pocketmind.search import SearchError
from pocketmind.search.chunk import Chunk, chunk_text, paragraphs

PARAS = [f"Paragraph {i} says something about topic {i} in a few words." for i in range(12)]
TEXT = "\n\n".join(PARAS) + "\n"


def test_paragraphs_are_found_between_blank_lines_without_their_whitespace():
    text = "  first line\nstill first\n\n \t\n second  \n\n\nthird"
    assert [text[s:e] for s, e in paragraphs(text)] == ["first line\nstill first", "second", "third"]
    assert paragraphs("\n \n") == []


def test_every_chunk_is_its_exact_slice_and_within_the_limit():
    chunks = chunk_text(TEXT, "notes.md", max_chars=200, overlap=80)
    assert len(chunks) > 1
    for c in chunks:
        assert c.source == "notes.md"
        assert TEXT[c.start:c.end] == c.text
        assert len(c.text) <= 200
        assert c.text == c.text.strip()


def test_chunks_hold_whole_paragraphs_cover_everything_and_overlap():
    chunks = chunk_text(TEXT, "n", max_chars=200, overlap=80)
    for p in PARAS:  # each paragraph is whole in some chunk
        assert any(p in c.text for c in chunks)
    for a, b in zip(chunks, chunks[1:]):
        assert b.start < a.end, "neighbours share their boundary paragraph"
        assert b.start > a.start, "always moving forward"
        shared = TEXT[b.start:a.end]
        assert shared.strip() in PARAS or all(p in PARAS for p in shared.split("\n\n"))


def test_without_overlap_chunks_do_not_share_text():
    chunks = chunk_text(TEXT, "n", max_chars=200, overlap=0)
    assert all(b.start >= a.end for a, b in zip(chunks, chunks[1:]))
    assert "\n\n".join(c.text for c in chunks) == TEXT.strip()


def test_a_long_paragraph_is_cut_at_spaces_into_overlapping_windows():
    words = " ".join(f"word{i}" for i in range(400))
    chunks = chunk_text(words, "long.txt", max_chars=300, overlap=50)
    assert len(chunks) > 5
    for a, b in zip(chunks, chunks[1:]):
        assert len(a.text) <= 300
        assert 0 < a.end - b.start <= 50 + 10  # about `overlap` characters shared
        assert words[b.start - 1] == " " and a.text.split()[-1] in words.split()  # starts and ends on words
    assert chunks[-1].end == len(words)


def test_a_word_longer_than_the_limit_is_still_cut():
    text = "x" * 1000
    chunks = chunk_text(text, "x", max_chars=300, overlap=20)
    assert chunks[0].start == 0 and chunks[-1].end == 1000
    assert all(len(c.text) <= 300 for c in chunks)


def test_empty_text_gives_no_chunks_and_bad_settings_are_refused():
    assert chunk_text(" \n\n ", "e") == []
    with pytest.raises(SearchError, match="overlap"):
        chunk_text("text", "x", max_chars=100, overlap=100)
    with pytest.raises(SearchError):
        chunk_text("text", "x", max_chars=0, overlap=0)


def test_chunks_round_trip_through_json():
    c = chunk_text(TEXT, "a.md", 200, 50)[1]
    assert Chunk.from_json(c.to_json()) == c
