"""Labelled items from a CSV file (UTF-8, a header row), checked before anything runs.

Every problem is a DataError that names it: not UTF-8 (with the byte offset and line), empty, a missing or doubled
column (with the columns present), a row with the wrong number of fields or an empty text, an unknown label (row number,
the label, the allowed set), a split with no rows, or a file over the size limit (checked before reading).
Rows are numbered from 1 after the header; `line` is the file line where the row starts (quoted fields may span
lines).
"""
from __future__ import annotations

import csv
import io
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .task import listing

MAX_BYTES = 50_000_000  # 50 MB: far above any hand-labelled set, small enough to hold in a page's memory


class DataError(ValueError):
    """A data file that cannot be used, with what is wrong and where."""


@dataclass(frozen=True)
class Row:
    text: str
    label: str | None  # None when the data has no label column (items to classify, not to evaluate)
    split: str | None
    number: int  # 1 = the first row after the header
    line: int
    id: str | None = None


def read_rows(path: str | os.PathLike, text_column: str = "text", label_column: str | None = "label",
              labels: Sequence[str] | None = None, split: str | None = None, split_column: str = "split",
              max_bytes: int = MAX_BYTES) -> list[Row]:
    """Read and check a CSV file; see parse_rows. The size is checked before a byte is read."""
    return parse_rows(read_bytes(path, max_bytes), text_column, label_column, labels, split, split_column, max_bytes)


def read_bytes(path: str | os.PathLike, max_bytes: int = MAX_BYTES) -> bytes:
    """A data file's bytes; the size is checked before a byte is read."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise DataError(f"no data file at {path}") from None
    _check_size(size, max_bytes)
    with open(path, "rb") as f:
        return f.read(max_bytes + 1)


def eval_rows(data: bytes, text_column: str, label_column: str, labels: Sequence[str], split: str = "test",
              dev_split: str = "dev", limit: int | None = None) -> tuple[list[Row], list[Row] | None]:
    """(the rows to evaluate, the dev rows that fit ensembles and cascades), the first `limit` of each. split "all"
    takes every row and no dev rows; a file without dev rows gives None (nothing is fitted)."""
    columns = dict(text_column=text_column, label_column=label_column, labels=labels)
    every = parse_rows(data, **columns)  # once: a file of 50 MB is not parsed twice
    if split == "all":
        return every[:limit], None
    rows = [r for r in every if r.split == split][:limit]
    if not rows:
        parse_rows(data, split=split, **columns)  # raises parse_rows' own message (no split column, or no such split)
    dev = [r for r in every if r.split == dev_split][:limit]
    return rows, dev or None


def read_lines(data: bytes, max_bytes: int = MAX_BYTES) -> list[str]:
    """Items from a plain-text file: one per non-blank line, without the line's surrounding spaces (UTF-8 and the
    size are checked as for CSV)."""
    text = _decode(data, max_bytes)
    return [line.strip() for line in text.splitlines() if line.strip()]


def parse_rows(data: bytes, text_column: str = "text", label_column: str | None = "label",
               labels: Sequence[str] | None = None, split: str | None = None, split_column: str = "split",
               max_bytes: int = MAX_BYTES) -> list[Row]:
    """Rows from CSV bytes (a dropped file in the page). `labels` is the allowed set (None: any label);
    `label_column` None reads unlabelled items; `split` keeps only rows whose split column has that value."""
    text = _decode(data, max_bytes)
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except csv.Error as e:
        raise DataError(f"line 1 is not valid CSV: {e}") from None
    header = [h.strip() for h in header]
    doubled = sorted({h for h in header if header.count(h) > 1})
    if doubled:
        raise DataError(f"the header names a column more than once: {', '.join(map(repr, doubled))}")
    index = {name: i for i, name in enumerate(header)}
    needed = [text_column] + ([label_column] if label_column else []) + ([split_column] if split else [])
    for column in needed:
        if column not in index:
            raise DataError(f"the file has no column {column!r}; its columns are: {', '.join(map(repr, header))}")
    allowed = set(labels) if labels is not None else None
    rows, splits = [], set()
    number = 0
    while True:
        line = reader.line_num + 1
        try:
            fields = next(reader)
        except StopIteration:
            break
        except csv.Error as e:
            raise DataError(f"row {number + 1} (line {line}) is not valid CSV: {e}") from None
        if not any(f.strip() for f in fields):
            continue  # blank lines are not rows
        number += 1
        if len(fields) != len(header):
            raise DataError(f"row {number} (line {line}) has {len(fields)} fields; the header has {len(header)}")
        row_split = fields[index[split_column]].strip() if split_column in index else None
        splits.add(row_split)
        if split is not None and row_split != split:
            continue
        item = fields[index[text_column]]
        if not item.strip():
            raise DataError(f"row {number} (line {line}) has an empty {text_column!r}")
        label = fields[index[label_column]].strip() if label_column else None
        if label_column and allowed is not None and label not in allowed:
            raise DataError(f"row {number} (line {line}) has the label {label!r}, which is not one of: "
                            f"{listing(list(labels))}")
        rows.append(Row(item, label, row_split, number, line, fields[index["id"]] if "id" in index else None))
    if number == 0:
        raise DataError("the file has a header but no rows")
    if not rows:
        present = ", ".join(sorted(map(repr, splits - {None})))
        raise DataError(f"no rows have {split_column} {split!r}; the splits present are: {present}")
    return rows


def _decode(data: bytes, max_bytes: int) -> str:
    _check_size(len(data), max_bytes)
    if not data.strip():
        raise DataError("the file is empty")
    try:
        return data.decode("utf-8-sig")  # strict; a BOM from spreadsheet exports is dropped
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b"\n") + 1
        raise DataError(f"the file is not UTF-8 text: byte 0x{data[e.start]:02x} at offset {e.start} (line {line}) "
                        "is not valid UTF-8; save the file as UTF-8") from None


def _check_size(size: int, max_bytes: int) -> None:
    if size > max_bytes:
        raise DataError(f"the file is {size / 1e6:.1f} MB; the limit is {max_bytes / 1e6:g} MB")
