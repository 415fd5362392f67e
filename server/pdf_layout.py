"""Pieces of page layout the court's PDFs share (the notice, the evidence report): reportlab tables whose every cell
is set in our embedded CJK font, text escaped for reportlab's paragraph markup, and text broken into lines that never
end just after a ``-`` (an address; a table cell's text)."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from xml.sax.saxutils import escape

from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.textsplit import ALL_CANNOT_END, ALL_CANNOT_START
from reportlab.pdfbase.pdfmetrics import stringWidth
from reportlab.platypus import Flowable, Paragraph, Table, TableStyle

#: A run of characters kept on one line where it fits: a Latin word, a number, an id, a path; any other character
#: is a run of its own (Chinese breaks between any two characters).
_RUNS = re.compile(r"[\x21-\x7e]+|\s|.")
#: What never begins a line: 、。）」 and the like (reportlab's list), and the full-width ，：；！？.
_CANNOT_START = frozenset(ALL_CANNOT_START + "，：；！？")
#: What never ends a line before more text: a ``-`` (see :func:`address_lines`), and （《「 and the like.
_CANNOT_END = "-" + ALL_CANNOT_END


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
    (reportlab's CJK wrapping breaks a run anywhere, also just after a ``-``)."""

    def __init__(self, text: str, style: ParagraphStyle) -> None:
        super().__init__()
        self.text = text
        self.style = style
        self._paragraph: Paragraph | None = None  # set for the width the table gives

    def _width_of(self, text: str) -> float:
        return float(stringWidth(text, self.style.fontName, self.style.fontSize))

    def wrap(self, availWidth: float, availHeight: float) -> tuple[float, float]:
        room = availWidth - self.style.leftIndent - self.style.rightIndent
        lines = text_lines(self.text, self._width_of, room)
        self._paragraph = Paragraph("<br/>".join(markup(line) for line in lines), self.style)
        # An em more, for a hanging 、: the paragraph sets these lines as they are, and breaks none again.
        _width, height = self._paragraph.wrap(availWidth + self.style.fontSize, availHeight)
        return availWidth, float(height)

    def draw(self) -> None:
        assert self._paragraph is not None, "drawn before it was wrapped"
        self._paragraph.drawOn(self.canv, 0, 0)

    def minWidth(self) -> float:
        """The widest run (a table sizes a column of no set width by it, as it would a paragraph's widest word)."""
        return max((self._width_of(run) for run in _RUNS.findall(self.text) if not run.isspace()), default=0.0)
