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
