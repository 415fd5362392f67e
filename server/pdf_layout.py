"""Pieces of page layout the court's PDFs share (the notice, the evidence report): reportlab tables whose every cell
is set in our embedded CJK font, text escaped for reportlab's paragraph markup, and an address broken into lines."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from xml.sax.saxutils import escape

from reportlab.platypus import Flowable, Table, TableStyle


def markup(text: str) -> str:
    """``text`` for reportlab's paragraph markup."""
    return escape(text)


def font_table(
    rows: Sequence[Sequence[Flowable | str]], commands: Sequence[tuple[object, ...]], font: str, **kwargs: object
) -> Table:
    """A table whose cells are set in ``font`` (reportlab's default would add an unembedded Helvetica)."""
    table = Table([list(row) for row in rows], **kwargs)
    table.setStyle(TableStyle([("FONTNAME", (0, 0), (-1, -1), font), *commands]))
    return table


def stack(rows: Sequence[Flowable], font: str) -> Table:
    """``rows`` one above the other, without padding on the left and top."""
    padding = [("LEFTPADDING", (0, 0), (-1, -1), 0), ("TOPPADDING", (0, 0), (-1, -1), 0)]
    return font_table([[row] for row in rows], padding, font)


def address_lines(text: str, width_of: Callable[[str], float], width: float) -> list[str]:
    """``text`` (an address: no spaces to break at) in lines of at most ``width`` as ``width_of`` measures them,
    broken between any two characters but never just after a ``-``: a reader would take that ``-`` for a hyphenation
    and leave it out (and so do PDF text extractors), and the address would be another one. A ``-`` at a break begins
    the next line instead."""
    lines: list[str] = []
    line = ""
    for char in text:
        if line and width_of(line + char) > width:
            kept = line.rstrip("-")
            if not kept:  # a line of nothing but "-": nothing else to do
                kept = line
            lines.append(kept)
            line = line[len(kept) :]
        line += char
    if line:
        lines.append(line)
    return lines
