"""Reading labelled CSVs (pocketmind.tasks.data): the shipped files, and every bad file with its message."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from pocketmind.tasks import DataError, Task, parse_rows, read_rows

REPO = Path(__file__).resolve().parents[1]
LABELS = ("positive", "negative", "neutral")


def write(tmp_path: Path, data: bytes | str, name: str = "data.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return path


def test_shipped_files_read_with_their_splits():
    for name, n_dev, n_test in [("review_sentiment", 77, 113), ("support_tickets", 80, 115)]:
        task = Task.load(REPO / "data" / "tasks" / f"{name}.json")
        rows = read_rows(task.data, task.text_column, task.label_column, task.labels)
        assert len(rows) == n_dev + n_test and all(r.label in task.labels for r in rows)
        assert [r.number for r in rows] == list(range(1, len(rows) + 1))
        test = read_rows(task.data, labels=task.labels, split="test")
        assert len(test) == n_test and {r.split for r in test} == {"test"}
        assert len(read_rows(task.data, labels=task.labels, split="dev")) == n_dev


def test_quoted_fields_bom_blank_lines_and_row_lines(tmp_path):
    text = '\ufeffid,text,label\r\na1,"Good, really ""good""\nand more",positive\r\n\r\na2,meh,neutral\r\n'
    rows = read_rows(write(tmp_path, text), labels=LABELS)
    assert [(r.id, r.text, r.label, r.number, r.line) for r in rows] == [
        ("a1", 'Good, really "good"\nand more', "positive", 1, 2), ("a2", "meh", "neutral", 2, 5)]


def test_unlabelled_items(tmp_path):
    rows = read_rows(write(tmp_path, "text\nfirst\nsecond\n"), label_column=None)
    assert [(r.text, r.label) for r in rows] == [("first", None), ("second", None)]


@pytest.mark.parametrize("data, kwargs, message", [
    (b"", {}, "the file is empty"),
    (b"  \n\n", {}, "the file is empty"),
    (b"text,label\n", {}, "the file has a header but no rows"),
    (b"id,review,label\n1,great,positive\n", {},
     "the file has no column 'text'; its columns are: 'id', 'review', 'label'"),
    (b"text,sentiment\ngreat,positive\n", {}, "the file has no column 'label'; its columns are: 'text', 'sentiment'"),
    (b"text,label\ngreat,positive\n", {"split": "test"},
     "the file has no column 'split'; its columns are: 'text', 'label'"),
    (b"text,label,split\ngreat,positive,dev\nbad,negative,dev\n", {"split": "test"},
     "no rows have split 'test'; the splits present are: 'dev'"),
    (b"text,label\ngreat,positive\nawful,negatve\n", {},
     "row 2 (line 3) has the label 'negatve', which is not one of: positive, negative, neutral"),
    (b"text,label\ngreat,positive\n\"two\nlines\",neutral\nok,good\n", {},
     "row 3 (line 5) has the label 'good', which is not one of: positive, negative, neutral"),
    (b"text,label\ngreat,positive,extra\n", {}, "row 1 (line 2) has 3 fields; the header has 2"),
    (b"text,label,text\ngreat,positive,x\n", {}, "the header names a column more than once: 'text'"),
    (b"text,label\n ,positive\n", {}, "row 1 (line 2) has an empty 'text'"),
    (b"text,label\ngreat,positive\ncaf\xe9,neutral\n", {},
     "the file is not UTF-8 text: byte 0xe9 at offset 29 (line 3) is not valid UTF-8; save the file as UTF-8"),
    (b"\xff\xfet\x00e\x00x\x00t\x00", {}, "the file is not UTF-8 text: byte 0xff at offset 0 (line 1)"),
])
def test_bad_files_are_named(tmp_path, data, kwargs, message):
    with pytest.raises(DataError, match=re.escape(message)):
        read_rows(write(tmp_path, data), labels=LABELS, **kwargs)
    with pytest.raises(DataError, match=re.escape(message)):  # the page's path: bytes of a dropped file
        parse_rows(data, labels=LABELS, **kwargs)


def test_a_file_over_50_mb_is_refused_before_it_is_read(tmp_path, monkeypatch):
    path = tmp_path / "big.csv"
    with open(path, "wb") as f:  # sparse: 52 MB on paper, nothing on disk
        f.write(b"text,label\n")
        f.truncate(52_400_000)
    monkeypatch.setattr("builtins.open", lambda *a, **k: pytest.fail("the file was opened"))
    with pytest.raises(DataError, match=re.escape("the file is 52.4 MB; the limit is 50 MB")):
        read_rows(path, labels=LABELS)


def test_the_limit_is_a_parameter_and_applies_to_bytes(tmp_path):
    data = b"text,label\n" + b"good,positive\n" * 100
    assert len(read_rows(write(tmp_path, data), labels=LABELS, max_bytes=len(data))) == 100
    with pytest.raises(DataError, match=r"the file is 0\.0 MB; the limit is 0\.001 MB"):
        parse_rows(data, labels=LABELS, max_bytes=1000)


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="no data file at"):
        read_rows(tmp_path / "nope.csv")


def test_eval_rows_splits_once_and_names_a_missing_split():
    from pocketmind.tasks.data import eval_rows

    data = b"id,split,text,label\nr1,dev,nice,positive\nr2,test,awful,negative\nr3,test,fine,neutral\n"
    rows, dev = eval_rows(data, "text", "label", LABELS)
    assert [r.text for r in rows] == ["awful", "fine"] and [r.text for r in dev] == ["nice"]
    assert eval_rows(data, "text", "label", LABELS, split="all")[1] is None
    assert eval_rows(data, "text", "label", LABELS, limit=1)[0][0].text == "awful"
    assert eval_rows(data.replace(b",dev,", b",test,"), "text", "label", LABELS)[1] is None  # nothing to fit on
    with pytest.raises(DataError, match="^no rows have split 'valid'; the splits present are: 'dev', 'test'$"):
        eval_rows(data, "text", "label", LABELS, split="valid")
    with pytest.raises(DataError, match="^the file has no column 'split'; its columns are: 'text', 'label'$"):
        eval_rows(b"text,label\nnice,positive\n", "text", "label", LABELS)
