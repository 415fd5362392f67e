"""Finding given PDF names in bytes with one compiled regular expression, however they are spelt with ``#xx`` escapes
(``/J#61vaScript`` is ``/JavaScript``), in time linear in the bytes' length: the regex engine walks the bytes, and
Python sees only the matches of the names looked for (never one call per ``/``, as tokenising every name would)."""

from __future__ import annotations

import re
from collections.abc import Iterable

#: What ends a PDF name: white space and the delimiters. Any other byte (``#`` too) continues it.
REGULAR = rb"[^\x00\t\n\f\r ()<>\[\]{}/%]"
_ESCAPE = re.compile(rb"#([0-9A-Fa-f]{2})")


def spelling(name: bytes) -> bytes:
    """A pattern matching ``name``'s characters, each as itself or as its ``#xx`` escape (either case of hex)."""
    out = []
    for byte in name:
        high, low = f"{byte:02x}".encode()
        hexes = b"".join(b"[%s%s]" % (bytes([c]), bytes([c]).upper()) if c > 0x39 else bytes([c]) for c in (high, low))
        out.append(b"(?:%s|#%s)" % (re.escape(bytes([byte])), hexes))
    return b"".join(out)


def finder(wanted: Iterable[bytes]) -> re.Pattern[bytes]:
    """One pattern for the PDF names ``wanted`` (group 1: the name as spelt), each a whole name: ``/JSX`` is no
    ``/JS``."""
    ordered = sorted(set(wanted), key=lambda n: (-len(n), n))
    # the first character's class first: at a ``/`` that starts no wanted name the engine stops at once
    first = re.escape(bytes(sorted({n[0] for n in ordered} | {ord("#")})))
    alternatives = b"|".join(spelling(n) for n in ordered)
    return re.compile(rb"/(?=[%s])(%s)(?!%s)" % (first, alternatives, REGULAR))


def unescape(name: bytes | memoryview) -> bytes:
    """``name`` with its ``#xx`` escapes decoded (call it on a match, not on a file)."""
    return _ESCAPE.sub(lambda m: bytes([int(m.group(1), 16)]), bytes(name))


#: White space and comments between a key and its value: at most :data:`MAX_ITEMS` runs of white space and comments,
#: each comment of at most :data:`MAX_COMMENT` bytes up to its end of line (possessive: no backtracking; bounded: a
#: key inside a comment must not scan the lines after it, or lines of ``%/S`` cost time quadratic in their number).
#: Longer comments, or more of them, hide the value from this check (no writer puts a comment there).
MAX_COMMENT = 64
MAX_ITEMS = 32
SEPARATORS = rb"(?:[\x00\t\n\f\r ]++|%%[^\r\n]{0,%d}+(?=[\r\n]|\Z)){0,%d}+" % (MAX_COMMENT, MAX_ITEMS)
#: The keys whose value says what a dictionary does: an action's type and an annotation's (or XObject's).
TYPE_KEYS = (b"S", b"Subtype")
_REFERENCE = rb"\d{1,10}%s\d{1,5}%sR(?!%s)" % (SEPARATORS, SEPARATORS, REGULAR)


def _alternatives(wanted: Iterable[bytes]) -> bytes:
    return b"|".join(spelling(n) for n in sorted(set(wanted), key=lambda n: (-len(n), n)))


def active_finder(bare: Iterable[bytes], values: Iterable[bytes], keys: Iterable[bytes]) -> re.Pattern[bytes]:
    """One pattern finding the names ``bare`` anywhere; the names ``values`` only as the value of ``/S`` or
    ``/Subtype`` (``/S /Sound``, ``/Subtype%c\\n/Scr#65en``: not ``/BM /Screen``, nor ``Phone case/Screen`` in a
    page's text); and the names ``keys`` only as a dictionary's key, followed by a dictionary or an indirect reference
    (``/AA << …``, ``/EF 5 0 R``: not ``Batteries AA/AA``). Exactly one group matches: the name as spelt."""
    bare_part = rb"(%s)(?!%s)" % (_alternatives(bare), REGULAR)
    value_part = rb"(?:%s)(?!%s)%s/(%s)(?!%s)" % (
        b"|".join(spelling(k) for k in TYPE_KEYS),
        REGULAR,
        SEPARATORS,
        _alternatives(values),
        REGULAR,
    )
    key_part = rb"(%s)(?!%s)%s(?:<<|%s)" % (_alternatives(keys), REGULAR, SEPARATORS, _REFERENCE)
    # the first character's class first: at a ``/`` that starts none of them the engine stops at once
    first = re.escape(bytes(sorted({n[0] for n in (*bare, *keys, *TYPE_KEYS)} | {ord("#")})))
    return re.compile(rb"/(?=[%s])(?:%s|%s|%s)" % (first, bare_part, value_part, key_part))


def dangling(keys: Iterable[bytes]) -> re.Pattern[bytes]:
    """A key of :data:`TYPE_KEYS` or of ``keys`` whose value is not yet in sight: its separators (or the start of an
    indirect reference) run to the end of the bytes searched. Scanning a piece at a time, the next piece is read
    after it (group 1: the key, 2: the separators, 3: the start of the value)."""
    keys_part = rb"/(?:%s)(?!%s)" % (b"|".join(spelling(k) for k in (*TYPE_KEYS, *keys)), REGULAR)
    value = rb"(?:/%s*+|<|\d{1,10}%s(?:\d{1,5}%s)?)?" % (REGULAR, SEPARATORS, SEPARATORS)
    return re.compile(rb"(%s)(%s)(%s)\Z" % (keys_part, SEPARATORS, value))


def dangling_key(pattern: re.Pattern[bytes], window: bytes, margin: int) -> re.Match[bytes] | None:
    """A key of :func:`dangling` ``pattern`` whose value is not in ``window``: kept from the last piece, at the
    window's start, or near its end — ``margin`` before its trailing white space, or anywhere if the window ends in a
    comment (a line with a ``%``: the key may be far before it, past long white space; the search is still linear,
    each key's separators being bounded, :data:`SEPARATORS`)."""
    trimmed = window.rstrip(b"\x00\t\n\f\r ")
    key = pattern.match(window) or pattern.search(window, max(0, len(trimmed) - margin))
    if key is None and trimmed.find(b"%", max(trimmed.rfind(b"\n"), trimmed.rfind(b"\r")) + 1) >= 0:
        key = pattern.search(window)
    return key


def shortened(key: re.Match[bytes]) -> bytes:
    """What a match of :func:`dangling` reads as to a reader, its separators shortened to one (a comment left open if
    they end in one): the key, a space or an open comment, the start of its value."""
    separators = key.group(2)
    in_comment = separators.rfind(b"%") > max(separators.rfind(b"\n"), separators.rfind(b"\r"))
    return key.group(1) + (b" %" if in_comment else b" ") + key.group(3)


def found_name(match: re.Match[bytes]) -> bytes:
    """The name a match of :func:`active_finder` or :func:`finder` found, its escapes decoded."""
    return unescape(next(group for group in match.groups() if group is not None))
