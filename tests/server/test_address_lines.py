"""An address printed on a court's PDF (the notice's URL under its QR code) breaks between any two characters but
never just after a ``-``: a reader takes such a ``-`` for a hyphenation and types the address without it, and so do
PDF text extractors (``pdftotext``). The notice's token is base64url: a ``-`` at a line's end came now and then."""

from __future__ import annotations

import string

from hypothesis import given
from hypothesis import strategies as st
from reportlab.pdfbase.pdfmetrics import stringWidth

from server.pdf_layout import address_lines

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
