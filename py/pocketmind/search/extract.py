"""Plain text from the files a person can search: .txt, .md, .csv, .html (standard library only, so it runs in
Pyodide too). Every refusal is a SearchError naming the file and what is wrong with it."""
from __future__ import annotations

import csv
import io
from html.parser import HTMLParser
from pathlib import PurePath

from . import SearchError

MAX_BYTES = 20 * 1024 * 1024  # one document; far above any hand-written text, far below what a page can hold
SUFFIXES = (".txt", ".md", ".markdown", ".csv", ".html", ".htm")

# HTML elements whose content is not text a reader sees
_HIDDEN = {"script", "style", "template", "noscript", "svg"}
# elements that end a paragraph
_BLOCKS = {"p", "div", "section", "article", "header", "footer", "main", "aside", "nav", "li", "ul", "ol", "dl",
           "dt", "dd", "h1", "h2", "h3", "h4", "h5", "h6", "table", "tr", "blockquote", "pre", "figure",
           "figcaption", "form", "hr", "br", "title", "body", "html"}


def supported(name: str) -> bool:
    return PurePath(name).suffix.lower() in SUFFIXES


def check_size(name: str, size: int, max_bytes: int = MAX_BYTES) -> None:
    """Refuse a document over max_bytes by its size alone (before its bytes are read or copied)."""
    if size > max_bytes:
        raise SearchError(f"{name}: {size:,} bytes is over the {max_bytes:,}-byte limit for one document; "
                          "split it into smaller files")


def extract_text(name: str, data: bytes, max_bytes: int = MAX_BYTES) -> str:
    """The readable text of file `name` with contents `data`; paragraphs separated by blank lines."""
    suffix = PurePath(name).suffix.lower()
    if suffix not in SUFFIXES:
        raise SearchError(f"{name}: unsupported file type {suffix or '(none)'}; use {', '.join(SUFFIXES)}")
    check_size(name, len(data), max_bytes)
    if not data.strip():
        raise SearchError(f"{name}: the file is empty")
    if b"\0" in data[:8192]:
        raise SearchError(f"{name}: looks like a binary file (it contains NUL bytes), not text")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise SearchError(f"{name}: not UTF-8 text (invalid byte 0x{data[e.start]:02x} at offset {e.start}); "
                          "save it as UTF-8") from None
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if suffix == ".csv":
        text = _csv_text(name, text)
    elif suffix in (".html", ".htm"):
        text = _html_text(text)
    if not text.strip():
        raise SearchError(f"{name}: no text found in the file")
    return text


def _csv_text(name: str, text: str) -> str:
    """One paragraph per row, "column: value" pairs, so each row is found by what its cells say."""
    try:
        rows = list(csv.reader(io.StringIO(text)))
    except csv.Error as e:
        raise SearchError(f"{name}: not a readable CSV ({e})") from None
    rows = [r for r in rows if any(cell.strip() for cell in r)]
    if not rows:
        return ""
    header, body = rows[0], rows[1:]
    if not body:
        return "; ".join(header)
    lines = []
    for row in body:
        cells = [f"{h.strip()}: {v.strip()}" if h.strip() else v.strip()
                 for h, v in zip(header + [""] * (len(row) - len(header)), row) if v.strip()]
        lines.append("; ".join(cells))
    return "\n\n".join(lines)


class _TextCollector(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.hidden = 0

    def handle_starttag(self, tag, attrs):
        if tag in _HIDDEN:
            self.hidden += 1
        elif tag in _BLOCKS:
            self.parts.append("\n\n")

    def handle_startendtag(self, tag, attrs):
        if tag in _BLOCKS:
            self.parts.append("\n\n")

    def handle_endtag(self, tag):
        if tag in _HIDDEN:
            self.hidden = max(self.hidden - 1, 0)
        elif tag in _BLOCKS:
            self.parts.append("\n\n")

    def handle_data(self, data):
        if not self.hidden:
            self.parts.append(" ".join(data.split()) if data.strip() else " ")


def _html_text(text: str) -> str:
    parser = _TextCollector()
    parser.feed(text)
    parser.close()
    joined = "".join(parser.parts)
    # tidy: single spaces inside a paragraph, one blank line between paragraphs
    paras = (" ".join(p.split()) for p in joined.split("\n\n"))
    return "\n\n".join(p for p in paras if p)
