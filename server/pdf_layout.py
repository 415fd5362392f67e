"""Pieces of page layout the court's PDFs share (the notice, the evidence report): reportlab tables whose every cell
is set in our embedded CJK font, and text escaped for reportlab's paragraph markup."""

from __future__ import annotations

from collections.abc import Sequence
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
