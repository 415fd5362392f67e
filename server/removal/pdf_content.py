"""Active content in a proof PDF: what a reader of the court's or the creditor's could run or open from it.

A proof is a receipt, an agreement, a bank's letter: it needs no script, no program to launch, no file inside it,
no multimedia, no XFA form, no form sending or importing data and no jump to another file. :func:`active_content`
finds the names that bring those in — ``/JavaScript``, ``/JS``, ``/Launch``, ``/EmbeddedFile(s)``, ``/RichMedia``,
``/XFA``, ``/SubmitForm``, ``/ImportData``, ``/GoToR``, ``/GoToE`` — as PDF names, also when spelt with ``#xx``
escapes (``/J#61vaScript`` is ``/JavaScript``), in the file's bytes and in every stream whose data inflates, whatever
its dictionary says (an object stream needs no ``/Type /ObjStm``: a reader finds it through the xref stream). A
stream is found by its keyword ``stream`` and an end of line (CR LF, LF or CR) and ends at the next ``endstream``
(its ``/Length`` is not trusted); ``/ASCIIHexDecode`` and ``/ASCII85Decode`` before ``/FlateDecode`` are decoded.
Inflated data is scanned a chunk at a time (a window with a small overlap), so a large page picture is checked
without being held; all of a file's streams together inflate to at most :func:`inflation_budget` bytes. A stream
that looks compressed (a zlib header, or ``/FlateDecode`` in the bytes before it) but does not inflate to its end
within the budget (another filter, encrypted, damaged, a bomb), or names a filter this check cannot undo (LZW,
run length, crypt) or a predictor it cannot undo (:mod:`~server.removal.pdf_predictor`), cannot be checked, and is
refused as well.

An ``/OpenAction`` alone is no active content (writers use it for the first page's view); one whose action is
JavaScript names ``/JavaScript``. Not a parser: a name inside a string or a content stream counts too (a receipt has
none). ``/JS`` is short enough to turn up by chance in a picture's bytes: it is looked for outside the streams'
bodies and in inflated streams that are neither pictures nor fonts (it acts only in a JavaScript action, and
``/JavaScript`` is looked for everywhere).
"""

from __future__ import annotations

import base64
import binascii
import re
import zlib
from collections.abc import Iterable

from server.removal.pdf_predictor import MAX_SLOW_BYTES, Unpredictable, Unpredictor, parameters

#: The names of active content, and what each brings (a key of the catalogue's ``[pdf_active]`` section).
ACTIVE_NAMES = {
    b"JavaScript": "javascript",
    b"JS": "javascript",
    b"Launch": "launch",
    b"EmbeddedFile": "embedded_file",
    b"EmbeddedFiles": "embedded_file",
    b"RichMedia": "rich_media",
    b"XFA": "xfa",
    b"SubmitForm": "submit_form",
    b"ImportData": "import_data",
    b"GoToR": "other_file",
    b"GoToE": "other_file",
}
#: What each is called in a refusal (zh, en), as in the catalogue.
ACTIVE_WORDS = {
    "javascript": ("脚本", "JavaScript"),
    "launch": ("启动外部程序的动作", "an action launching a program"),
    "embedded_file": ("嵌入的文件", "an embedded file"),
    "rich_media": ("多媒体内容", "rich media"),
    "xfa": ("动态表单", "an XFA form"),
    "submit_form": ("提交表单数据的动作", "an action sending form data"),
    "import_data": ("导入数据的动作", "an action importing data"),
    "other_file": ("打开其他文件的动作", "an action opening another file"),
}
#: All of a file's streams inflate to at most this many bytes, plus :data:`INFLATION_RATIO` times the file's size
#: (a scanned page's picture may inflate to tens of megabytes; a bomb inflates a thousandfold).
MAX_INFLATED_TOTAL = 16 * 1024 * 1024
INFLATION_RATIO = 16
#: Inflated data is scanned this many bytes at a time, each chunk with the last :data:`OVERLAP` bytes before it
#: (longer than any of the names, ``#xx``-escaped: ``/EmbeddedFiles`` is 40 bytes at most).
CHUNK = 256 * 1024
OVERLAP = 64

#: A PDF name: a solidus and the regular characters after it (white space and delimiters end it).
_NAME = re.compile(rb"/([^\x00\t\n\f\r ()<>\[\]{}/%]*)")
_ESCAPE = re.compile(rb"#([0-9A-Fa-f]{2})")
_STREAM = re.compile(rb"(?<!end)stream(?:\r\n|\n|\r)")
_END = b"endstream"
#: A stream's filters or their parameters kept in another object (``/Filter 7 0 R``): this check cannot tell them.
_INDIRECT = re.compile(rb"/(?:Filter|DecodeParms)\s+\d+\s+\d+\s+R(?![^\x00\t\n\f\r ()<>\[\]{}/%])")
#: ``/JS`` is short enough to turn up by chance in a megabyte of compressed picture: see the module's words.
_SHORT = frozenset({b"JS"})
#: The names in a stream's dictionary that make it a picture or a font: ``/JS`` is not looked for in its data.
_BINARY = frozenset({b"Image", b"Length1", b"Length2", b"Length3", b"Type1C", b"CIDFontType0C", b"OpenType"})
_FLATE = frozenset({b"FlateDecode", b"Fl"})
_ASCII = frozenset({b"ASCIIHexDecode", b"AHx", b"ASCII85Decode", b"A85"})
_UNDOABLE = frozenset({b"LZWDecode", b"LZW", b"RunLengthDecode", b"RL", b"Crypt"})


class Unreadable(Exception):
    """A stream that cannot be inflated within the bounds: what it holds cannot be checked."""


def _unescape(name: bytes) -> bytes:
    return _ESCAPE.sub(lambda m: bytes([int(m.group(1), 16)]), name)


def names(data: bytes) -> set[bytes]:
    """The PDF names in ``data``, their ``#xx`` escapes decoded."""
    return {_unescape(m.group(1)) for m in _NAME.finditer(data)}


def inflation_budget(data: bytes) -> int:
    """How many bytes all of ``data``'s streams may inflate to together."""
    return MAX_INFLATED_TOTAL + INFLATION_RATIO * len(data)


def active_content(data: bytes) -> str | None:
    """What active content the PDF ``data`` has (a key of :data:`ACTIVE_WORDS`), or ``None``; :class:`Unreadable`
    if a compressed stream of it cannot be inflated within the bounds."""
    found = _active(data, ACTIVE_NAMES.keys() - _SHORT) or _active(_outside_streams(data), _SHORT)
    if found is not None:
        return found
    budget, slow = [inflation_budget(data)], [MAX_SLOW_BYTES]
    for dictionary, body in streams(data):
        found = _check_stream(dictionary, body, budget, slow)
        if found is not None:
            return found
    return None


def _active(data: bytes, wanted: Iterable[bytes]) -> str | None:
    for name in sorted(names(data) & set(wanted)):
        return ACTIVE_NAMES[name]
    return None


def _outside_streams(data: bytes) -> bytes:
    """``data`` without the streams' bodies (each up to the first ``endstream`` after its keyword)."""
    parts, at = [], 0
    for keyword in _STREAM.finditer(data):
        if keyword.start() < at:
            continue
        parts.append(data[at : keyword.end()])
        end = data.find(_END, keyword.end())
        at = len(data) if end < 0 else end
    parts.append(data[at:])
    return b"".join(parts)


def streams(data: bytes) -> list[tuple[bytes, bytes]]:
    """Each stream keyword's dictionary — the bytes since the previous keyword or the previous body's ``endstream``,
    whichever is later — and body: the bytes after it up to the next ``endstream`` (the file's end if none). Every
    keyword counts, also one inside another stream's body: what a reader might take for a stream is looked into."""
    found, after_keyword, after_body = [], 0, 0
    for keyword in _STREAM.finditer(data):
        start = after_body if after_keyword <= after_body <= keyword.start() else after_keyword
        end = data.find(_END, keyword.end())
        end = len(data) if end < 0 else end
        found.append((data[start : keyword.start()], data[keyword.end() : end]))
        after_keyword, after_body = keyword.end(), end + len(_END)
    return found


def _looks_zlib(body: bytes) -> bool:
    """Whether ``body`` starts with a zlib header (deflate, no preset dictionary: what a Flate stream starts with)."""
    if len(body) < 2 or body[0] & 0x0F != 8 or body[0] >> 4 > 7 or body[1] & 0x20:
        return False
    return (body[0] << 8 | body[1]) % 31 == 0


def _check_stream(dictionary: bytes, body: bytes, budget: list[int], slow: list[int]) -> str | None:
    if _INDIRECT.search(_unescape(dictionary)):
        raise Unreadable("a stream whose filters are another object's")
    spelt = [_unescape(m.group(1)) for m in _NAME.finditer(dictionary)]
    filters = [name for name in spelt if name in _FLATE | _ASCII | _UNDOABLE]
    if _UNDOABLE.intersection(filters):
        raise Unreadable("a stream with a filter this check cannot undo")
    flate = [i for i, name in enumerate(filters) if name in _FLATE]
    if flate and _ASCII.intersection(filters[flate[0] :]):
        raise Unreadable("a stream with an ASCII filter after /FlateDecode")
    wanted = ACTIVE_NAMES.keys() if _BINARY.isdisjoint(spelt) else ACTIVE_NAMES.keys() - _SHORT
    data = body
    for name in filters[: flate[0]] if flate else filters:
        data = _ascii_decode(name, data)
    if data is not body:
        found = _active(data, wanted)
        if found is not None:
            return found
    if not flate and not _looks_zlib(data):
        return None
    try:
        rows = Unpredictor(parameters(dictionary), slow)
    except Unpredictable as exc:
        raise Unreadable(f"a compressed stream's predictor cannot be undone: {exc}") from None
    return _scan_inflated(data.lstrip(b"\x00\t\n\f\r ") if flate else data, set(wanted), budget, rows)


def _ascii_decode(name: bytes, data: bytes) -> bytes:
    try:
        if name in (b"ASCIIHexDecode", b"AHx"):
            text = re.sub(rb"\s", b"", data.split(b">", 1)[0])
            return binascii.unhexlify(text + b"0" * (len(text) % 2))
        text = re.sub(rb"\s", b"", data.split(b"~>", 1)[0])
        return base64.a85decode(text.removeprefix(b"<~"))
    except ValueError as exc:
        raise Unreadable(f"an ASCII-encoded stream does not decode: {exc}") from None


def _scan_inflated(data: bytes, wanted: set[bytes], budget: list[int], rows: Unpredictor) -> str | None:
    """Inflate ``data`` (a zlib stream, and any more after it) chunk by chunk, its predictor undone (``rows``),
    scanning each chunk with the overlap."""
    carry = b""
    while True:
        inflater = zlib.decompressobj()
        pending = data
        while True:
            if budget[0] <= 0:
                raise Unreadable("the streams inflate to more than can be checked")
            try:
                chunk = inflater.decompress(pending, min(CHUNK, budget[0]))
            except zlib.error as exc:
                raise Unreadable(f"a compressed stream does not inflate: {exc}") from None
            budget[0] -= len(chunk)
            pending = inflater.unconsumed_tail
            try:
                window = carry + rows.feed(chunk) + (rows.pending if inflater.eof else b"")
            except Unpredictable as exc:
                raise Unreadable(f"a compressed stream's predictor cannot be undone: {exc}") from None
            for match in _NAME.finditer(window):
                if match.end() == len(window) and not inflater.eof:
                    break  # perhaps cut short: it is in the overlap
                name = _unescape(match.group(1))
                if name in wanted:
                    return ACTIVE_NAMES[name]
            carry = window[-OVERLAP:]
            if inflater.eof:
                break
            if not pending and not chunk:
                raise Unreadable("a compressed stream ends before its data does")
        rest = inflater.unused_data.lstrip(b"\x00\t\n\f\r ")
        if not _looks_zlib(rest):
            return None
        data, carry = rest, b""
