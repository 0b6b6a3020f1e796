"""Cut a document into chunks of whole paragraphs, each overlapping the one before, with exact character offsets.

Paragraphs are runs of text between blank lines. Chunks pack consecutive paragraphs up to max_chars; the next chunk
starts with the previous chunk's trailing paragraphs that fit in `overlap` characters, so a passage that straddles a
boundary is whole in at least one chunk. A paragraph longer than max_chars is cut into windows at whitespace, each
window overlapping the last by about `overlap` characters. Every chunk's text is exactly source_text[start:end].
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass

from . import SearchError

DEFAULT_MAX_CHARS = 1000  # ~250 BERT tokens: well inside MiniLM's 512 and its 256-token training length
DEFAULT_OVERLAP = 200

_BLANK_LINES = re.compile(r"\n[ \t\r\f\v]*\n\s*")


@dataclass(frozen=True)
class Chunk:
    source: str  # the file (or other) name it came from
    start: int  # character offsets into the source's extracted text
    end: int
    text: str

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> Chunk:
        return cls(str(data["source"]), int(data["start"]), int(data["end"]), str(data["text"]))


def paragraphs(text: str) -> list[tuple[int, int]]:
    """(start, end) of each paragraph, surrounding whitespace excluded."""
    spans, pos = [], 0
    for gap in [*_BLANK_LINES.finditer(text), None]:
        end = gap.start() if gap else len(text)
        _append_stripped(text, pos, end, spans)
        if gap:
            pos = gap.end()
    return spans


def _append_stripped(text: str, start: int, end: int, spans: list[tuple[int, int]]) -> None:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    if end > start:
        spans.append((start, end))


def windows(text: str, start: int, end: int, max_chars: int, overlap: int) -> list[tuple[int, int]]:
    """(start, end) pieces of at most max_chars covering text[start:end], cut at whitespace where there is some in
    the window's second half, each beginning about `overlap` characters before the previous one ended."""
    pieces = []
    while True:
        if end - start <= max_chars:
            pieces.append((start, end))
            return pieces
        cut = start + max_chars
        space = text.rfind(" ", start + max_chars // 2, cut + 1)
        cut = space if space > start else cut
        pieces.append((start, cut))
        nxt = max(cut - overlap, start + 1)
        space = text.find(" ", nxt, cut)  # begin the next window on a word
        nxt = space + 1 if space != -1 and space + 1 < cut else nxt
        while nxt < end and text[nxt].isspace():
            nxt += 1
        start = nxt


def chunk_text(text: str, source: str, max_chars: int = DEFAULT_MAX_CHARS,
               overlap: int = DEFAULT_OVERLAP) -> list[Chunk]:
    if max_chars < 1 or not 0 <= overlap < max_chars:
        raise SearchError(f"chunking needs max_chars >= 1 and 0 <= overlap < max_chars (got {max_chars}, {overlap})")
    pieces = [w for s, e in paragraphs(text) for w in windows(text, s, e, max_chars, overlap)]
    chunks, i = [], 0
    while i < len(pieces):
        j = i  # the chunk is pieces[i..j]
        while j + 1 < len(pieces) and pieces[j + 1][1] - pieces[i][0] <= max_chars:
            j += 1
        start, end = pieces[i][0], pieces[j][1]
        chunks.append(Chunk(source, start, end, text[start:end]))
        if j + 1 >= len(pieces):
            break
        # carry the trailing paragraphs that fit in the overlap (always moving forward)
        k = j + 1
        while k - 1 > i and pieces[j][1] - pieces[k - 1][0] <= overlap:
            k -= 1
        i = k
    return chunks
