"""Active content in a proof PDF: what a reader of the court's or the creditor's could run or open from it.

A proof is a receipt, an agreement, a bank's letter: it needs no script, no program to launch, no file inside it, no
multimedia, no XFA form, no form sending or importing data and no jump to another file. :func:`active_content` finds
the rare names that bring those in — ``/JavaScript``, ``/JS``, ``/Launch``, ``/EmbeddedFile(s)``, ``/RichMedia``,
``/XFA``, ``/SubmitForm``, ``/ImportData``, ``/GoToR``, ``/GoToE`` — wherever they are; the everyday words only
where they act (:data:`TYPE_NAMES`: as an action's ``/S`` or an annotation's ``/Subtype``, e.g. ``/S /Sound``,
``/Subtype /Screen``, ``/Subtype /FileAttachment`` — an attachment needs neither ``/EmbeddedFile`` — ``/3D``,
``/Hide``, ``/ResetForm``; :data:`KEY_NAMES`: ``/AA`` (actions run on opening a page, focusing a field, …) and
``/EF`` as a dictionary's key, followed by a dictionary or a reference), so that a receipt's text ("Phone
case/Screen protector", "Batteries AA/AA") or the blend mode ``/BM /Screen`` is none — as PDF names, also when spelt
with ``#xx`` escapes (``/J#61vaScript`` is ``/JavaScript``), in the file's bytes and in every stream whose data
inflates, whatever its dictionary says (an object stream needs no ``/Type /ObjStm``: a reader finds it through the
xref stream). A stream is found by its keyword ``stream`` and an end of line (CR LF, LF or CR) and ends at the next
``endstream`` (its ``/Length`` is not trusted); ``/ASCIIHexDecode`` and ``/ASCII85Decode`` before ``/FlateDecode``
are decoded. Inflated data is scanned a chunk at a time (a window with a small overlap), so a large page picture is
checked without being held; all of a file's streams together inflate to at most :func:`inflation_budget` bytes, and
the bytes they are read from (a keyword inside another stream's body reads some of them again) count against the same
budget. The check runs in time and memory linear in the file's size: streams are slices of the file, found once (one
search for each ``endstream``), the names are found by one regular expression each (:mod:`pdf_names`), never one
Python call per ``/``; a file with more than :data:`MAX_STREAMS` stream keywords, or more than
:data:`MAX_DICTIONARY_NAMES` filter names in its streams' dictionaries, is :class:`TooComplex` and refused. A stream
that looks compressed (a zlib header, or ``/FlateDecode`` in the bytes before it) but does not inflate to its end
within the budget (another filter, encrypted, damaged, a bomb), or names a filter this check cannot undo (LZW, run
length, crypt) or a predictor it cannot undo (:mod:`~server.removal.pdf_predictor`), cannot be checked, and is
refused as well.

An ``/OpenAction`` that is a destination or a lone ``/GoTo`` is no active content (writers use it for the first
page's view); any other (a URI, a named action, one this check cannot see) is refused, and an indirect one only
if every definition of its object, in the bytes or in an object stream, is harmless (:mod:`pdf_actions`).
Not a parser: a rare name inside a string or a content stream counts too (a receipt has none), and so does
``/S /Sound`` spelt out in a page's text (which no receipt says). ``/JS`` is short enough to turn up by chance in a
picture's bytes: it is looked for outside the streams' bodies and in inflated streams that are neither pictures nor
fonts (it acts only in a JavaScript action, and ``/JavaScript`` is looked for everywhere).
"""

from __future__ import annotations

import base64
import binascii
import re
import zlib
from collections.abc import Iterator

from server.removal import pdf_names
from server.removal.pdf_actions import MAX_HEAD, MAX_VALUE, OPEN_ACTION, PAIRS, harmless, value_harmless, wanted_offsets
from server.removal.pdf_names import REGULAR, active_finder, dangling, finder, found_name, shortened, spelling, unescape
from server.removal.pdf_predictor import MAX_ROWS, MAX_SLOW_BYTES, Unpredictable, Unpredictor, parameters

#: The names of active content, and what each brings (a key of the catalogue's ``[pdf_active]`` section): rare
#: words, counted wherever they are (as in 77a9efa).
BARE_NAMES = {
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
#: Everyday words (a receipt's "Phone case/Screen protector", "Show/Hide", the blend mode ``/BM /Screen``), counted
#: only as the value of ``/S`` (an action's type) or ``/Subtype`` (an annotation's): ``/S /Sound``,
#: ``/Subtype /Screen``.
TYPE_NAMES = {
    # an attachment needs no /EmbeddedFile(s): a FileAttachment annotation's file spec has the file under /EF
    b"FileAttachment": "embedded_file",
    b"RichMediaExecute": "rich_media",
    b"Sound": "multimedia",
    b"Movie": "multimedia",
    b"Rendition": "multimedia",
    b"Screen": "multimedia",
    b"3D": "multimedia",
    b"GoTo3DView": "multimedia",
    b"ResetForm": "form_action",
    b"Hide": "form_action",
}
#: Keys, counted only as a dictionary's key whose value is a dictionary or a reference (``/AA << …``, ``/EF 5 0 R``):
#: not "Batteries AA/AA".
KEY_NAMES = {
    b"EF": "embedded_file",
    b"AA": "automatic_action",  # additional actions: run on opening a page, focusing a field, … (a URI too)
}
ACTIVE_NAMES = BARE_NAMES | TYPE_NAMES | KEY_NAMES
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
    "multimedia": ("声音、视频或三维内容", "sound, video or 3D content"),
    "automatic_action": ("打开文件或页面时自动执行的动作", "an action run when the file or a page is opened"),
    "form_action": ("更改表单的动作", "an action changing a form"),
}
#: All of a file's streams inflate to at most this many bytes, plus :data:`INFLATION_RATIO` times the file's size
#: (a scanned page's picture may inflate to tens of megabytes; a bomb inflates a thousandfold).
MAX_INFLATED_TOTAL = 16 * 1024 * 1024
INFLATION_RATIO = 16
#: Inflated data is scanned this many bytes at a time, each chunk with the last :data:`OVERLAP` bytes before it
#: (longer than any of the names, ``#xx``-escaped: ``/EmbeddedFiles`` is 40 bytes at most).
CHUNK = 256 * 1024
OVERLAP = 64
#: A file with more stream keywords than this is not checked (a 10 MB proof has a few hundred streams).
MAX_STREAMS = 10_000
#: All of a file's streams' dictionaries name at most this many filters or picture and font types together.
MAX_DICTIONARY_NAMES = 100_000
#: A file with more ``/OpenAction`` keys than this (its own and its incremental updates' catalogues) is refused.
MAX_OPEN_ACTIONS = 32

#: How much of each stream's data is decoded to tell an object stream's header (:func:`_resolve`).
HEAD = 4096

_STREAM = re.compile(rb"(?<!end)stream(?:\r\n|\n|\r)")
_END = b"endstream"
_SPACE = re.compile(rb"[\x00\t\n\f\r ]*")
#: A stream's filters or their parameters kept in another object (``/Filter 7 0 R``): this check cannot tell them.
_INDIRECT = re.compile(rb"/(?:%s|%s)\s+\d+\s+\d+\s+R(?!%s)" % (spelling(b"Filter"), spelling(b"DecodeParms"), REGULAR))
#: ``/JS`` is short enough to turn up by chance in a megabyte of compressed picture: see the module's words.
_SHORT = frozenset({b"JS"})
#: The names in a stream's dictionary that make it a picture or a font: ``/JS`` is not looked for in its data.
_BINARY = frozenset({b"Image", b"Length1", b"Length2", b"Length3", b"Type1C", b"CIDFontType0C", b"OpenType"})
_FLATE = frozenset({b"FlateDecode", b"Fl"})
_ASCII = frozenset({b"ASCIIHexDecode", b"AHx", b"ASCII85Decode", b"A85"})
_UNDOABLE = frozenset({b"LZWDecode", b"LZW", b"RunLengthDecode", b"RL", b"Crypt"})
_ALL = active_finder(BARE_NAMES, TYPE_NAMES, KEY_NAMES)
_LONG = active_finder(BARE_NAMES.keys() - _SHORT, TYPE_NAMES, KEY_NAMES)
_DANGLING = dangling(KEY_NAMES)
#: A key whose value is not yet in sight is kept for the next piece of inflated data with the bytes after it, or
#: as :func:`~server.removal.pdf_names.shortened` if they are more than this many.
MAX_SEPARATORS = 64 * 1024
_SHORT_ONLY = finder(_SHORT)
_DICTIONARY = finder(_FLATE | _ASCII | _UNDOABLE | _BINARY)


class Unreadable(Exception):
    """A stream that cannot be inflated within the bounds: what it holds cannot be checked."""


class TooComplex(Unreadable):
    """More streams or filter names than are checked: the file is refused unchecked."""


class _Budget:
    """What a file's check may still spend: inflated bytes and bytes read (``work``), filter names (``names``),
    rows filtered with Average or Paeth (``slow``) and predictor rows (``rows``)."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.open_actions = MAX_OPEN_ACTIONS
        self.references: dict[int, int] = {}  # the objects /OpenAction refers to: how many definitions seen
        self.work = inflation_budget(data)
        self.names = MAX_DICTIONARY_NAMES
        self.slow = [MAX_SLOW_BYTES, MAX_ROWS]

    def spend(self, n: int) -> None:
        self.work -= n
        if self.work < 0:
            raise Unreadable("the streams inflate to (or are read for) more than can be checked")


def inflation_budget(data: bytes) -> int:
    """How many bytes all of ``data``'s streams may inflate to together."""
    return MAX_INFLATED_TOTAL + INFLATION_RATIO * len(data)


def active_content(data: bytes) -> str | None:
    """What active content the PDF ``data`` has (a key of :data:`ACTIVE_WORDS`), or ``None``; :class:`Unreadable`
    if a compressed stream of it cannot be inflated within the bounds (:class:`TooComplex`: it has too many)."""
    budget = _Budget(data)
    found = _first(_LONG, data) or _first(_SHORT_ONLY, _outside_streams(data)) or _open_action(data, budget)
    if found is not None:
        return found
    for n, (dictionary, body) in enumerate(streams(data)):
        if n >= MAX_STREAMS:
            raise TooComplex(f"more than {MAX_STREAMS} stream keywords")
        found = _check_stream(dictionary, body, budget)
        if found is not None:
            return found
    return _resolve(data, budget.references) if budget.references else None


def _resolve(data: bytes, references: dict[int, int]) -> str | None:
    """``automatic_action`` unless every definition in an object stream of an object an ``/OpenAction`` refers to is
    a destination or a lone ``/GoTo``, and each has a definition somewhere. Each stream's data is decoded again,
    only as far as its header (a few kilobytes) and the objects wanted, within a budget of its own."""
    budget = _Budget(data)
    for dictionary, body in streams(data):
        head = _decoded(dictionary, body, budget, HEAD)
        run = PAIRS.match(head)
        if run is not None and run.end() == len(head) == HEAD:
            head = _decoded(dictionary, body, budget, MAX_HEAD)
        wanted = wanted_offsets(dictionary, head, references)
        if wanted is None:
            return "automatic_action"
        if not wanted:
            continue
        end = max(where for _, where in wanted) + MAX_VALUE
        whole = head if end <= len(head) else _decoded(dictionary, body, budget, end)
        for number, where in wanted:
            if not value_harmless(whole[where : where + MAX_VALUE]):
                return "automatic_action"
            references[number] += 1
    return "automatic_action" if 0 in references.values() else None


def _decoded(dictionary: memoryview, body: memoryview, budget: _Budget, size: int) -> bytes:
    """The first ``size`` bytes (or fewer) of the stream's data as a reader decodes it."""
    filters = [name for name in _spelt(dictionary, budget) if name not in _BINARY]
    flate = [i for i, name in enumerate(filters) if name in _FLATE]
    data: bytes | memoryview = body
    for name in filters[: flate[0]] if flate else filters:
        budget.spend(len(data))
        data = _ascii_decode(name, bytes(data))
    if not flate and not _looks_zlib(data):
        return bytes(data[:size])
    view = memoryview(data)
    at = _after_space(view, 0) if flate else 0
    inflater = zlib.decompressobj()
    try:
        rows = Unpredictor(parameters(dictionary), budget.slow)
        out = inflater.decompress(view[at:], max(1, min(size + rows.step, budget.work)))
        out = rows.feed(out) + (rows.pending if inflater.eof else b"")
    except (zlib.error, Unpredictable) as exc:
        raise Unreadable(f"a compressed stream does not decode: {exc}") from None
    budget.spend(len(out) + len(view) - at - len(inflater.unconsumed_tail))
    return out[:size]


def _first(pattern: re.Pattern[bytes], data: bytes | memoryview) -> str | None:
    match = pattern.search(data)
    return None if match is None else ACTIVE_NAMES[found_name(match)]


def _open_action(window: bytes | memoryview, budget: _Budget, *, until: int | None = None) -> str | None:
    """``automatic_action`` if an ``/OpenAction`` in ``window`` (starting before ``until``) is no destination or
    lone ``/GoTo`` (:mod:`~server.removal.pdf_actions`)."""
    for match in OPEN_ACTION.finditer(window, 0, len(window) if until is None else until + 32):
        if until is not None and match.start() >= until:
            break
        budget.open_actions -= 1
        if budget.open_actions < 0 or not harmless(window[match.end() :], budget.data, budget.references):
            return "automatic_action"
    return None


def _outside_streams(data: bytes) -> bytes:
    """``data`` without the streams' bodies (each up to the first ``endstream`` after its keyword)."""
    parts, at = [], 0
    while (keyword := _STREAM.search(data, at)) is not None:
        parts.append(data[at : keyword.end()])
        end = data.find(_END, keyword.end())
        at = len(data) if end < 0 else end
    parts.append(data[at:])
    return b"".join(parts)


def streams(data: bytes) -> Iterator[tuple[memoryview, memoryview]]:
    """Each stream keyword's dictionary — the bytes since the previous keyword or the previous body's ``endstream``,
    whichever is later — and body: the bytes after it up to the next ``endstream`` (the file's end if none), as
    slices of ``data`` (no copies). Every keyword counts, also one inside another stream's body: what a reader might
    take for a stream is looked into. Each ``endstream`` is searched for once: keywords before it share it."""
    view = memoryview(data)
    after_keyword = after_body = 0
    end = -1
    for keyword in _STREAM.finditer(data):
        start = after_body if after_keyword <= after_body <= keyword.start() else after_keyword
        if end < keyword.end():
            end = data.find(_END, keyword.end())
            end = len(data) if end < 0 else end
        yield view[start : keyword.start()], view[keyword.end() : end]
        after_keyword, after_body = keyword.end(), end + len(_END)


def _looks_zlib(body: bytes | memoryview) -> bool:
    """Whether ``body`` starts with a zlib header (deflate, no preset dictionary: what a Flate stream starts with)."""
    if len(body) < 2 or body[0] & 0x0F != 8 or body[0] >> 4 > 7 or body[1] & 0x20:
        return False
    return (body[0] << 8 | body[1]) % 31 == 0


def _spelt(dictionary: memoryview, budget: _Budget) -> list[bytes]:
    """The filters and the picture or font types ``dictionary`` names, in order, their escapes decoded."""
    found = []
    for match in _DICTIONARY.finditer(dictionary):
        budget.names -= 1
        if budget.names < 0:
            raise TooComplex(f"more than {MAX_DICTIONARY_NAMES} filter names in the streams' dictionaries")
        found.append(unescape(match.group(1)))
    return found


def _check_stream(dictionary: memoryview, body: memoryview, budget: _Budget) -> str | None:
    if _INDIRECT.search(dictionary):
        raise Unreadable("a stream whose filters are another object's")
    spelt = _spelt(dictionary, budget)
    filters = [name for name in spelt if name not in _BINARY]
    if _UNDOABLE.intersection(filters):
        raise Unreadable("a stream with a filter this check cannot undo")
    flate = [i for i, name in enumerate(filters) if name in _FLATE]
    if flate and _ASCII.intersection(filters[flate[0] :]):
        raise Unreadable("a stream with an ASCII filter after /FlateDecode")
    wanted = _ALL if _BINARY.isdisjoint(spelt) else _LONG
    data: bytes | memoryview = body
    for name in filters[: flate[0]] if flate else filters:
        budget.spend(len(data))
        data = _ascii_decode(name, bytes(data))
    if data is not body:
        found = _first(wanted, data)
        if found is not None:
            return found
    if not flate and not _looks_zlib(data):
        return None
    try:
        rows = Unpredictor(parameters(dictionary), budget.slow)
    except Unpredictable as exc:
        raise Unreadable(f"a compressed stream's predictor cannot be undone: {exc}") from None
    view = memoryview(data)
    return _scan_inflated(view, _after_space(view, 0) if flate else 0, wanted, budget, rows)


def _after_space(data: memoryview, at: int) -> int:
    """Where the white space (and NULs) from ``at`` ends."""
    found = _SPACE.match(data, at)
    return at if found is None else int(found.end())


def _ascii_decode(name: bytes, data: bytes) -> bytes:
    try:
        if name in (b"ASCIIHexDecode", b"AHx"):
            text = re.sub(rb"\s", b"", data.split(b">", 1)[0])
            return binascii.unhexlify(text + b"0" * (len(text) % 2))
        text = re.sub(rb"\s", b"", data.split(b"~>", 1)[0])
        return base64.a85decode(text.removeprefix(b"<~"))
    except ValueError as exc:
        raise Unreadable(f"an ASCII-encoded stream does not decode: {exc}") from None


def _scan_inflated(
    data: memoryview, at: int, wanted: re.Pattern[bytes], budget: _Budget, rows: Unpredictor
) -> str | None:
    """Inflate ``data`` from ``at`` (a zlib stream, and any more after it) a piece at a time, its predictor undone
    (``rows``), scanning each inflated chunk with the overlap before it. The bytes read and inflated are spent from
    ``budget``; no piece of input or output larger than :data:`CHUNK` is held."""
    carry = b""
    while True:
        inflater = zlib.decompressobj()
        while not inflater.eof:
            if at >= len(data):
                raise Unreadable("a compressed stream ends before its data does")
            pending: bytes | memoryview = data[at : at + CHUNK]
            budget.spend(len(pending))
            at += len(pending)
            while True:
                if budget.work <= 0:
                    raise Unreadable("the streams inflate to more than can be checked")
                try:
                    chunk = inflater.decompress(pending, min(CHUNK, budget.work))
                except zlib.error as exc:
                    raise Unreadable(f"a compressed stream does not inflate: {exc}") from None
                budget.spend(len(chunk))
                pending = inflater.unconsumed_tail
                try:
                    window = carry + rows.feed(chunk) + (rows.pending if inflater.eof else b"")
                except Unpredictable as exc:
                    raise Unreadable(f"a compressed stream's predictor cannot be undone: {exc}") from None
                for match in wanted.finditer(window):
                    if match.end() == len(window) and not inflater.eof:
                        break  # perhaps cut short: it is in the overlap
                    return ACTIVE_NAMES[found_name(match)]
                # an /OpenAction whose value may run past the window is looked at with the next one
                until = len(window) if inflater.eof else max(0, len(window) - MAX_VALUE - OVERLAP)
                found = _open_action(window, budget, until=until)
                if found is not None:
                    return found
                keep = min(until, max(0, len(window) - OVERLAP))
                carry = window[keep:]
                key = None if inflater.eof else pdf_names.dangling_key(_DANGLING, window, MAX_VALUE + 2 * OVERLAP)
                if key is not None and key.start() < keep:
                    # a key whose value is in the next piece: read with it (long separators shortened to one)
                    far = len(window) - key.start() > MAX_SEPARATORS
                    carry = shortened(key) if far else window[key.start() :]
                if inflater.eof or not pending:
                    break
        at = _after_space(data, at - len(inflater.unused_data))
        if not _looks_zlib(data[at : at + 2]):
            return None
        carry = b""
