"""Text extraction: each supported format, and a clear message for each file that cannot be used."""
from __future__ import annotations

import pytest

from pocketmind.search import SearchError
from pocketmind.search.extract import extract_text


def test_text_and_markdown_come_back_as_written_with_unix_newlines():
    assert extract_text("a.txt", "line one\r\nline two\r\n".encode()) == "line one\nline two\n"
    assert extract_text("b.md", "\ufeff# Title\n\nBody".encode("utf-8")) == "# Title\n\nBody"  # BOM dropped


def test_html_keeps_visible_text_in_paragraphs_and_drops_scripts_and_styles():
    html = ("<html><head><title>T</title><style>p{color:red}</style></head><body><h1>Head&amp;line</h1>"
            "<p>First   para\n graph.</p><script>var secret = 1;</script><div>Second<br>line</div></body></html>")
    text = extract_text("page.html", html.encode())
    assert text.split("\n\n") == ["T", "Head&line", "First para graph.", "Second", "line"]
    assert "secret" not in text and "color" not in text


def test_csv_rows_become_paragraphs_of_column_value_pairs():
    data = 'city,country,note\nParis,France,"capital, large"\nKyoto,Japan,\n'
    assert extract_text("c.csv", data.encode()).split("\n\n") == [
        "city: Paris; country: France; note: capital, large", "city: Kyoto; country: Japan"]


@pytest.mark.parametrize("name, data, message", [
    ("empty.txt", b"", "is empty"),
    ("blank.md", b" \n\n\t", "is empty"),
    ("bin.txt", b"abc\0def", "binary"),
    ("latin1.txt", "café".encode("latin-1"), r"not UTF-8 text \(invalid byte 0xe9 at offset 3\)"),
    ("image.png", b"\x89PNG", "unsupported file type .png"),
    ("noext", b"text", r"unsupported file type \(none\)"),
    ("scripts.html", b"<script>only()</script>", "no text found"),
])
def test_unusable_files_are_refused_with_their_name_and_reason(name, data, message):
    with pytest.raises(SearchError, match=message) as e:
        extract_text(name, data)
    assert str(e.value).startswith(name + ":")


def test_an_over_size_file_is_refused_before_decoding():
    with pytest.raises(SearchError, match="over the 1,000-byte limit"):
        extract_text("big.txt", b"a" * 1001, max_bytes=1000)
