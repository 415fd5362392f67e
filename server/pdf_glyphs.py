"""Whether the court's embedded font can draw a text, checked by the font's own character map: the one check every
text a court PDF draws goes through.

A character the font has no glyph for would be drawn as nothing — the printed paper would then say something else
than the text it was given (a judge ``张𠀀`` printed as ``张``). So a PDF either refuses a text it cannot draw (the
seal notice, whose facts are signed: :func:`first_undrawable`) or draws each such character as a visible
placeholder ``〔U+20000〕`` (the evidence report: :meth:`Glyphs.drawable`, which remembers that it did, so that the
document can say so). Bidirectional controls (U+202A–U+202E, U+2066–U+2069), which would reorder what follows them
in a reader that applies them, are shown the same way and never applied.
"""

from __future__ import annotations

#: Characters that reorder the text around them (embeddings, overrides, isolates): never drawn, always shown.
BIDI_CONTROLS = frozenset(chr(c) for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A)))
#: What a document never draws but lays out: a line break.
LAYOUT = frozenset("\n")


def placeholder(char: str) -> str:
    """How a character that is not drawn is shown: ``〔U+20000〕``."""
    return f"〔U+{ord(char):04X}〕"


class Glyphs:
    """The characters the registered reportlab font ``font`` (a TrueType one) can draw, by its character map; and
    the characters :meth:`drawable` replaced so far (a document's record of what it did not draw)."""

    def __init__(self, font: str) -> None:
        from reportlab.pdfbase import pdfmetrics

        self.font = font
        self._cmap: dict[int, int] = pdfmetrics.getFont(font).face.charToGlyph
        self.replaced: set[str] = set()

    def can_draw(self, char: str) -> bool:
        """Whether ``char`` is drawn as itself (a line break counts: it is laid out, never drawn)."""
        if char in LAYOUT:
            return True
        return char not in BIDI_CONTROLS and ord(char) in self._cmap

    def undrawable(self, text: str) -> list[str]:
        """The characters of ``text`` that would not be drawn as themselves, each once, in order."""
        return list(dict.fromkeys(c for c in text if not self.can_draw(c)))

    def drawable(self, text: str) -> str:
        """``text`` with each character the font cannot draw (and each bidirectional control) replaced by its
        :func:`placeholder`; the characters replaced are added to :attr:`replaced`."""
        missing = self.undrawable(text)
        if not missing:
            return text
        self.replaced.update(missing)
        return "".join(c if self.can_draw(c) else placeholder(c) for c in text)


def first_undrawable(glyphs: Glyphs, texts: dict[str, str]) -> tuple[str, str] | None:
    """The first (name, character) of ``texts`` (name → text, in order) with a character ``glyphs`` cannot draw."""
    for name, text in texts.items():
        missing = glyphs.undrawable(text)
        if missing:
            return name, missing[0]
    return None
