"""An address printed on a court's PDF (the notice's URL under its QR code) breaks between any two characters but
never just after a ``-``: a reader takes such a ``-`` for a hyphenation and types the address without it, and so do
PDF text extractors (``pdftotext``). The notice's token is base64url: a ``-`` at a line's end came now and then.
A table cell of the evidence report (an event's UUID in it) breaks the same way, and keeps Chinese punctuation
where it belongs."""

from __future__ import annotations

import re
import string

from hypothesis import assume, given
from hypothesis import strategies as st
from reportlab.pdfbase.pdfmetrics import stringWidth

from server.pdf_layout import address_lines, text_lines

ALPHABET = string.ascii_letters + string.digits + "-_.:/"


def _width(text: str) -> float:
    return stringWidth(text, "Helvetica", 6.5)


@given(st.text(alphabet=ALPHABET, min_size=1, max_size=400), st.floats(min_value=20, max_value=500))
def test_lines_hold_the_address_whole_and_none_ends_with_a_hyphen(text: str, width: float) -> None:
    lines = address_lines(text, _width, width)
    assert "".join(lines) == text
    for line in lines[:-1]:
        assert not line.endswith("-") or set(line) == {"-"}
        assert _width(line) <= width or len(line.lstrip("-")) <= 1


def test_a_hyphen_where_the_line_would_break_begins_the_next_line() -> None:
    width = _width("a" * 10)
    lines = address_lines("a" * 9 + "-" + "b" * 12, _width, width)
    assert lines == ["a" * 9, "-" + "b" * 9, "bbb"]


#: Closing marks, which never begin a line, and an opening one, which never ends one.
CLOSING, OPENING = "、。）", "（"
CELL_ALPHABET = ALPHABET + " 中文字" + CLOSING + OPENING


def _units(text: str) -> float:
    """A width as a table cell's font gives it, roughly: a Chinese character is twice as wide as a Latin one."""
    return sum(1.0 if ord(char) < 128 else 2.0 for char in text)


@given(st.text(alphabet=CELL_ALPHABET, min_size=1, max_size=300), st.floats(min_value=8, max_value=80))
def test_a_cell_keeps_its_text_ends_no_line_with_a_hyphen_and_begins_none_with_a_closing_mark(
    text: str, width: float
) -> None:
    assume(not re.search(rf"[\s{CLOSING}][{CLOSING}]", text))  # a mark after a space or another: it may begin one
    lines = text_lines(text, _units, width)
    assert "".join("".join(lines).split()) == "".join(text.split())
    for line in lines[:-1]:
        assert not line.endswith(("-", OPENING)) or not line.strip("-" + OPENING + " "), lines
    for line in lines[1:]:
        assert line[:1] not in CLOSING, lines
    for line in lines:  # a closing mark (、 or :) may hang past the end
        hangs = _units(line[:-1]) <= width and not line[-1:].isalnum()
        assert _units(line) <= width or hangs or len(line.lstrip("-" + OPENING)) <= 1, lines


def test_a_closing_mark_takes_the_run_before_it_along_or_hangs_and_an_opening_one_goes_to_the_next_line() -> None:
    assert text_lines("中文字、", _units, 6) == ["中文", "字、"]
    assert text_lines("12345678-90ab、中", _units, 13) == ["12345678-90ab、", "中"]
    assert text_lines("文件（SHA-256）", _units, 9) == ["文件", "（SHA-256）"]
    assert text_lines("见附件（二）。后", _units, 12) == ["见附件（二）。", "后"]
