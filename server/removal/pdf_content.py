"""Active content in a proof PDF: what a reader of the court's or the creditor's could run or open from it.

A proof is a receipt, an agreement, a bank's letter: it needs no script, no program to launch, no file inside it,
no multimedia and no XFA form. :func:`active_content` finds the names that bring those in — ``/JavaScript``,
``/JS``, ``/Launch``, ``/EmbeddedFile(s)``, ``/RichMedia``, ``/XFA`` — as PDF names, also when spelt with ``#xx``
escapes (``/J#61vaScript`` is ``/JavaScript``), in the file's bytes and in its object streams (``/Type /ObjStm``,
``/FlateDecode``), which are inflated to at most :data:`MAX_INFLATED_BYTES` each and :data:`MAX_INFLATED_TOTAL` in
all. An ``/OpenAction`` alone is no active content (writers use it for the first page's view); one whose action
is JavaScript names ``/JavaScript``. An object stream that cannot be inflated within those bounds (another filter,
encrypted, damaged, a bomb) cannot be checked, and is refused as well. Not a parser: a name inside a string or a
content stream counts too (a receipt has none), and streams that are not object streams (pages, fonts, pictures)
are not inflated — a reader takes no object from them.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterable

#: The names of active content, and what each brings (a key of the catalogue's ``[pdf_active]`` section).
ACTIVE_NAMES = {
    b"JavaScript": "javascript",
    b"JS": "javascript",
    b"Launch": "launch",
    b"EmbeddedFile": "embedded_file",
    b"EmbeddedFiles": "embedded_file",
    b"RichMedia": "rich_media",
    b"XFA": "xfa",
}
#: What each is called in a refusal (zh, en), as in the catalogue.
ACTIVE_WORDS = {
    "javascript": ("脚本", "JavaScript"),
    "launch": ("启动外部程序的动作", "an action launching a program"),
    "embedded_file": ("嵌入的文件", "an embedded file"),
    "rich_media": ("多媒体内容", "rich media"),
    "xfa": ("动态表单", "an XFA form"),
}
#: An object stream is inflated to at most this many bytes (a receipt's are a few kilobytes) ...
MAX_INFLATED_BYTES = 4 * 1024 * 1024
#: ... and all of a file's together to at most this many.
MAX_INFLATED_TOTAL = 16 * 1024 * 1024
#: How far before a stream's keyword its dictionary is looked for.
STREAM_DICT_BYTES = 4096

#: A PDF name: a solidus and the regular characters after it (white space and delimiters end it).
_NAME = re.compile(rb"/([^\x00\t\n\f\r ()<>\[\]{}/%]*)")
_ESCAPE = re.compile(rb"#([0-9A-Fa-f]{2})")
_STREAM = re.compile(rb"(?<!end)stream\r?\n")
_OBJ = re.compile(rb"\d+\s+\d+\s+obj\b")
_LENGTH = re.compile(rb"/Length\s+(\d{1,10})(?!\d)(?!\s+\d+\s+R)")
#: ``/JS`` is short enough to turn up by chance in a megabyte of compressed picture: it is looked for outside the
#: streams' bodies only (and in object streams). It acts only in a JavaScript action (``/S /JavaScript``), and
#: ``/JavaScript`` is looked for everywhere.
_SHORT = frozenset({b"JS"})


#: The names of stream filters (and their parameters) in a stream's dictionary.
_FILTERS = frozenset(
    {b"FlateDecode", b"LZWDecode", b"ASCIIHexDecode", b"ASCII85Decode", b"RunLengthDecode", b"Crypt", b"DecodeParms"}
)


class Unreadable(Exception):
    """An object stream that cannot be inflated within the bounds: its objects cannot be checked."""


def names(data: bytes) -> set[bytes]:
    """The PDF names in ``data``, their ``#xx`` escapes decoded."""
    return {_ESCAPE.sub(lambda m: bytes([int(m.group(1), 16)]), m.group(1)) for m in _NAME.finditer(data)}


def active_content(data: bytes) -> str | None:
    """What active content the PDF ``data`` has (a key of :data:`ACTIVE_WORDS`), or ``None``; :class:`Unreadable`
    if an object stream of it cannot be inflated within the bounds."""
    found = _active(data, ACTIVE_NAMES.keys() - _SHORT) or _active(_outside_streams(data), _SHORT)
    if found is not None:
        return found
    budget = MAX_INFLATED_TOTAL
    for compressed, stream in object_streams(data):
        inflated = _inflate(stream, min(MAX_INFLATED_BYTES, budget)) if compressed else stream
        budget -= len(inflated)
        found = _active(inflated, ACTIVE_NAMES.keys())
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
        end = data.find(b"endstream", keyword.end())
        at = len(data) if end < 0 else end
    parts.append(data[at:])
    return b"".join(parts)


def object_streams(data: bytes) -> list[tuple[bool, bytes]]:
    """The data of each object stream of ``data``, inflated if compressed (:func:`_inflate`); :class:`Unreadable` for
    one with another filter than ``/FlateDecode`` alone (a reader may decode it, this check would not)."""
    streams = []
    for keyword in _STREAM.finditer(data):
        start = max(0, keyword.start() - STREAM_DICT_BYTES)
        objects = list(_OBJ.finditer(data, start, keyword.start()))
        dictionary = data[objects[-1].end() if objects else start : keyword.start()]
        spelt = b" ".join(b"/" + n for n in names(dictionary))
        if b"/ObjStm" not in spelt.split():
            continue
        filters = names(dictionary) & _FILTERS
        if filters - {b"FlateDecode"}:
            raise Unreadable("an object stream with another filter than /FlateDecode alone")
        body_at = keyword.end()
        length = _LENGTH.search(dictionary)
        end = body_at + int(length.group(1)) if length else data.find(b"endstream", body_at)
        if end < body_at or end > len(data):
            end = len(data)
        streams.append((bool(filters), data[body_at:end]))
    return streams


def _inflate(stream: bytes, limit: int) -> bytes:
    if limit <= 0:
        raise Unreadable("the object streams inflate to more than can be checked")
    inflater = zlib.decompressobj()
    try:
        inflated = inflater.decompress(stream, limit)
    except zlib.error as exc:
        raise Unreadable(f"an object stream does not inflate: {exc}") from None
    if inflater.unconsumed_tail:
        raise Unreadable("an object stream inflates to more than can be checked")
    return inflated
