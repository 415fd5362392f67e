"""Undoing a Flate stream's predictor (``/DecodeParms << /Predictor … >>``), a row at a time, so that what a stream
holds is scanned as a reader sees it: PNG's filters (``/Predictor`` 10 to 15, each row saying its own) and TIFF's
(``2``, 8 bits a component). Rows filtered with PNG's Average or Paeth are undone byte by byte, at most
:data:`MAX_SLOW_BYTES` of them in a file (an xref or object stream has a few kilobytes; a picture rarely uses them);
a file's streams have at most :data:`MAX_ROWS` rows together (each costs a Python call: a stream of one-byte rows
must not hold a worker)."""

from __future__ import annotations

import re

import numpy

from server.removal.pdf_names import REGULAR, spelling, unescape

#: How many bytes of rows filtered with Average or Paeth a file's streams may have together.
MAX_SLOW_BYTES = 4 * 1024 * 1024
#: How many rows a file's streams may have together (an xref stream of 100,000 objects has 100,000; a page picture
#: a few thousand): at a few microseconds a row, about a second.
MAX_ROWS = 250_000
#: A dictionary giving more predictor parameters than this is not read.
MAX_PARAMETERS = 64

_NAMES = (b"Predictor", b"Columns", b"Colors", b"BitsPerComponent")
_PARAMETER = re.compile(rb"/(%s)(?!%s)\s*(\d{1,9})(?!\d)" % (b"|".join(spelling(n) for n in _NAMES), REGULAR))


class Unpredictable(Exception):
    """A predictor this module cannot undo, or parameters it cannot tell."""


def parameters(dictionary: bytes | memoryview) -> dict[bytes, int]:
    """The predictor's parameters named in ``dictionary`` (however their names are spelt with ``#xx`` escapes);
    :class:`Unpredictable` if one is given twice with different values, or more than :data:`MAX_PARAMETERS` are."""
    found: dict[bytes, int] = {}
    for n, match in enumerate(_PARAMETER.finditer(dictionary)):
        if n >= MAX_PARAMETERS:
            raise Unpredictable(f"more than {MAX_PARAMETERS} predictor parameters")
        key, value = unescape(match.group(1)), int(match.group(2))
        if found.setdefault(key, value) != value:
            raise Unpredictable(f"/{key.decode()} given twice")
    return found


class Unpredictor:
    """Feed it a stream's inflated bytes; it gives back the rows with the predictor undone."""

    def __init__(self, found: dict[bytes, int], slow_budget: list[int]) -> None:
        """``slow_budget``: the file's bytes of Average and Paeth rows and its rows left (spent by each stream)."""
        self.predictor = found.get(b"Predictor", 1)
        colors, bits, columns = found.get(b"Colors", 1), found.get(b"BitsPerComponent", 8), found.get(b"Columns", 1)
        if not (colors and bits and columns) or colors * bits * columns > 1 << 30:
            raise Unpredictable("predictor parameters out of range")
        if self.predictor == 2 and bits != 8:
            raise Unpredictable("a TIFF predictor on components of other than 8 bits")
        if self.predictor not in (1, 2) and not 10 <= self.predictor <= 15:
            raise Unpredictable(f"no predictor {self.predictor}")
        self.colors = colors
        self.bpp = max(1, (colors * bits + 7) // 8)
        self.width = (colors * bits * columns + 7) // 8
        self.step = self.width + (1 if self.predictor >= 10 else 0)
        self.previous = numpy.zeros(self.width, dtype=numpy.uint8)
        self.pending = b""
        self.slow = slow_budget

    def feed(self, data: bytes) -> bytes:
        if self.predictor == 1:
            return data
        data = self.pending + data
        rows = len(data) // self.step
        self.slow[1] -= rows
        if self.slow[1] < 0:
            raise Unpredictable(f"more than {MAX_ROWS} rows in the streams")
        self.pending = data[rows * self.step :]
        return b"".join(self._row(data[i * self.step : (i + 1) * self.step]) for i in range(rows))

    def _row(self, raw: bytes) -> bytes:
        if self.predictor == 2:
            row = numpy.frombuffer(raw, dtype=numpy.uint8)
            usable = len(row) - len(row) % self.colors
            out = row.copy()
            out[:usable] = numpy.cumsum(row[:usable].reshape(-1, self.colors), axis=0, dtype=numpy.uint8).ravel()
            return out.tobytes()
        kind, row = raw[0], numpy.frombuffer(raw, dtype=numpy.uint8, offset=1)
        up = self.previous
        if kind == 0:
            out = row.copy()
        elif kind == 2:
            out = row + up
        elif kind == 1 and self.width % self.bpp == 0:
            out = numpy.cumsum(row.reshape(-1, self.bpp), axis=0, dtype=numpy.uint8).ravel()
        elif kind in (1, 3, 4):
            out = self._slow(kind, row, up)
        else:
            raise Unpredictable(f"no PNG filter {kind}")
        self.previous = out
        return bytes(out)

    def _slow(self, kind: int, row: numpy.ndarray, up: numpy.ndarray) -> numpy.ndarray:
        self.slow[0] -= len(row)
        if self.slow[0] < 0:
            raise Unpredictable("too many rows filtered with Average or Paeth")
        out, above, bpp = bytearray(row.tobytes()), up.tobytes(), self.bpp
        for i in range(len(out)):
            left = out[i - bpp] if i >= bpp else 0
            if kind == 1:
                out[i] = (out[i] + left) & 0xFF
            elif kind == 3:
                out[i] = (out[i] + ((left + above[i]) >> 1)) & 0xFF
            else:
                corner = above[i - bpp] if i >= bpp else 0
                guess = left + above[i] - corner
                pa, pb, pc = abs(guess - left), abs(guess - above[i]), abs(guess - corner)
                best = left if pa <= pb and pa <= pc else above[i] if pb <= pc else corner
                out[i] = (out[i] + best) & 0xFF
        return numpy.frombuffer(bytes(out), dtype=numpy.uint8)
