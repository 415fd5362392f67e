"""Pieces of page layout the court's PDFs share (the notice, the evidence report): reportlab tables whose every cell
is set in our embedded CJK font (and whose rows may split across pages), text escaped for reportlab's paragraph
markup, and text broken into lines that never end just after a ``-`` (an address; a table cell's text).

Text is drawn only through :func:`markup` (a paragraph) and :class:`TextCell` (a table cell), both of which take the
font's :class:`~server.pdf_glyphs.Glyphs`: a character the font cannot draw is shown as a placeholder, never left
out."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from xml.sax.saxutils import escape

from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.textsplit import ALL_CANNOT_END, ALL_CANNOT_START
from reportlab.pdfbase.pdfmetrics import stringWidth
from reportlab.platypus import Flowable, Table, TableStyle

from server.pdf_glyphs import Glyphs

#: A run of characters kept on one line where it fits: a Latin word, a number, an id, a path; any other character
#: is a run of its own (Chinese breaks between any two characters).
_RUNS = re.compile(r"[\x21-\x7e]+|\s|.")
#: What never begins a line: 、。）」 and the like (reportlab's list), and the full-width ，：；！？.
_CANNOT_START = frozenset(ALL_CANNOT_START + "，：；！？")
#: What never ends a line before more text: a ``-`` (see :func:`address_lines`), and （《「 and the like.
_CANNOT_END = "-" + ALL_CANNOT_END


def markup(text: str, glyphs: Glyphs) -> str:
    """``text`` for reportlab's paragraph markup, each character the font cannot draw shown by its placeholder
    (:meth:`~server.pdf_glyphs.Glyphs.drawable`)."""
    return escape(glyphs.drawable(text))


def font_table(
    rows: Sequence[Sequence[Flowable | str]],
    commands: Sequence[tuple[object, ...]],
    glyphs: Glyphs,
    *,
    split_rows: bool = False,
    **kwargs: object,
) -> Table:
    """A table whose cells are set in the font of ``glyphs`` (reportlab's default would add an unembedded Helvetica);
    a cell of plain text shows a character the font cannot draw by its placeholder.

    ``split_rows``: a row too tall for the room left on a page is split between two lines of its cells
    (:meth:`TextCell.split`), the rest going on in the next page's table, so that no cell is too tall to be set.
    Reportlab splits only the cells that hold a list of flowables (a lone flowable it would leave out of both
    halves): each flowable is put in one."""
    if not split_rows:
        table = Table([[_drawn(c, glyphs) for c in row] for row in rows], **kwargs)
    else:
        cells = [[[c] if isinstance(c, Flowable) else _drawn(c, glyphs) for c in row] for row in rows]
        # A split within a row is tried first (where the page ends, not after a row and a repeated header).
        table = Table(cells, splitByRow=0, splitInRow=1, **kwargs)
    table.setStyle(TableStyle([("FONTNAME", (0, 0), (-1, -1), glyphs.font), *commands]))
    return table


def _drawn(cell: Flowable | str, glyphs: Glyphs) -> Flowable | str:
    return glyphs.drawable(cell) if isinstance(cell, str) else cell


def stack(rows: Sequence[Flowable], glyphs: Glyphs) -> Table:
    """``rows`` one above the other, without padding on the left and top."""
    padding = [("LEFTPADDING", (0, 0), (-1, -1), 0), ("TOPPADDING", (0, 0), (-1, -1), 0)]
    return font_table([[row] for row in rows], padding, glyphs)


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


def text_lines(text: str, width_of: Callable[[str], float], width: float) -> list[str]:
    """``text`` in lines of at most ``width`` as ``width_of`` measures them, each ``\\n`` a break of its own: broken
    at a space or between any two Chinese characters; a run of printable ASCII (a word, a number, an event's UUID)
    is kept whole where it fits on a line, else broken as :func:`address_lines` breaks it. No line ends with a ``-``
    the text goes on from: it begins the next line (a reader, and pdftotext, would take it for a hyphenation), and
    so does a （ or 《. Nor does a line begin with 、。）and the like: the run before one goes along with it, or, the
    only run of its line (or after another: ``）。``), it hangs past the line's end (as reportlab's CJK wrapping
    hangs it)."""
    lines: list[str] = []
    for paragraph in text.split("\n"):
        line, last, used, first = "", "", 0.0, len(lines)
        for run in _RUNS.findall(paragraph):
            w = width_of(run)
            if used + w > width and line.strip():
                if _hangs(line, last, run):
                    lines.append(line + run)
                    line, last, used = "", "", 0.0
                    continue
                done, line = _line_end(line, last, run)
                lines.append(done)
                used = width_of(line)
                if run.isspace() and not line:
                    continue
            if used + w > width:  # a run longer than a line
                *full, line = address_lines(line + run, width_of, width)
                lines += full
                used, last = width_of(line), line
            else:
                line, last, used = line + run, run, used + w
        if line.strip() or len(lines) == first:  # (after a hanging mark, nothing may be left)
            lines.append(line.rstrip())
    return lines


def _hangs(line: str, last: str, following: str) -> bool:
    """Whether ``following``, which may not begin a line, hangs past the end of ``line``: when no run of the line
    can go to the next line with it (``last`` is its only run, or is a closing mark itself: ``）。``)."""
    if following not in _CANNOT_START:
        return False
    return last in _CANNOT_START or not line[: len(line) - len(last)].strip().rstrip(_CANNOT_END)


def _line_end(line: str, last: str, following: str) -> tuple[str, str]:
    """A line that ends before the run ``following``: the text it keeps, and what begins the next line instead — a
    ``-`` or （ at its end, and its ``last`` run if ``following`` may not begin a line."""
    carried = ""
    if following in _CANNOT_START and last.strip():
        line, carried = line[: -len(last)], last
    end = line.rstrip()
    kept = end.rstrip(_CANNOT_END)
    if not kept.strip():  # a line of nothing but "-" (or "（"): nothing else to do
        return end, carried
    return kept.rstrip(), end[len(kept) :] + carried


class TextCell(Flowable):
    """A table cell of plain text set in ``style``, broken by :func:`text_lines` for the width its column gives it
    (reportlab's CJK wrapping breaks a run anywhere, also just after a ``-``). Taller than the room left on a page,
    it splits between two of its lines (:meth:`split`): a table whose rows split (:func:`font_table`) carries the
    rest of the row to the next page, so no text is too long to be set. A character the font cannot draw is shown by
    its placeholder (:meth:`~server.pdf_glyphs.Glyphs.drawable`)."""

    #: Points: a cell no taller is not split (its row begins the next page instead).
    SPLITS_OVER = 250.0
    #: Lines a split leaves at the foot of a page, and carries to the next, at least.
    EDGE_LINES = 3

    def __init__(self, text: str, style: ParagraphStyle, glyphs: Glyphs, *, lines: Sequence[str] | None = None) -> None:
        super().__init__()
        self.text = glyphs.drawable(text)
        self.style = style
        self.glyphs = glyphs
        self._broken: tuple[float, list[str]] | None = (0.0, list(lines)) if lines is not None else None

    def _width_of(self, text: str) -> float:
        return float(stringWidth(text, self.style.fontName, self.style.fontSize))

    def _lines(self, availWidth: float) -> list[str]:
        """The text's lines for a cell ``availWidth`` wide (a part split off keeps the lines it was given)."""
        if self._broken is None or self._broken[0] not in (0.0, availWidth):
            room = availWidth - self.style.leftIndent - self.style.rightIndent
            self._broken = (availWidth, text_lines(self.text, self._width_of, room))
        return self._broken[1]

    def wrap(self, availWidth: float, availHeight: float) -> tuple[float, float]:
        self.width, self.height = availWidth, self.style.leading * len(self._lines(availWidth))
        return self.width, self.height  # (a table splitting a row reads them as attributes)

    def split(self, availWidth: float, availHeight: float) -> list[Flowable]:
        """The lines that fit in ``availHeight``, and the rest: two cells, each of :attr:`EDGE_LINES` lines at least;
        none (the row goes to the next page whole) if the cell is no taller than :attr:`SPLITS_OVER`, or if fewer
        lines fit. The lines are those of the last :meth:`wrap` (a table asks to split a cell at its column's width,
        its padding included)."""
        lines = self._broken[1] if self._broken is not None else self._lines(availWidth)
        fit = min(int(availHeight // self.style.leading), len(lines) - self.EDGE_LINES)
        if len(lines) * self.style.leading <= self.SPLITS_OVER or fit < self.EDGE_LINES:
            return []
        return [TextCell("\n".join(part), self.style, self.glyphs, lines=part) for part in (lines[:fit], lines[fit:])]

    def draw(self) -> None:
        """The lines as they are (a hanging 、 past the column's end; none broken again)."""
        assert self._broken is not None, "drawn before it was wrapped"
        self.canv.setFillColor(self.style.textColor)
        text = self.canv.beginText(self.style.leftIndent, self.height - self.style.fontSize)
        text.setFont(self.style.fontName, self.style.fontSize, self.style.leading)
        for line in self._broken[1]:
            text.textLine(line)
        self.canv.drawText(text)

    def minWidth(self) -> float:
        """The widest run (a table sizes a column of no set width by it, as it would a paragraph's widest word)."""
        return max((self._width_of(run) for run in _RUNS.findall(self.text) if not run.isspace()), default=0.0)
