"""A PDF's ``/OpenAction``: what a reader does when the file is opened. A destination (an array: the first page's
view) or a ``/GoTo`` action is harmless; any other action — a URI (a beacon telling who opened the file, and when),
a named menu item, a sound, an action chained after a ``/GoTo`` with ``/Next`` — is refused, as is one this check
cannot see (an indirect reference to an object that is not in the file's plain bytes, e.g. in an object stream).
Not a parser: the value after the key is read as far as :data:`MAX_VALUE` bytes."""

from __future__ import annotations

import re

from server.removal.pdf_names import REGULAR, spelling, unescape

#: How far after ``/OpenAction`` (or after ``n g obj``) its value is read.
MAX_VALUE = 4096

OPEN_ACTION = re.compile(rb"/%s(?!%s)[\x00\t\n\f\r ]*" % (spelling(b"OpenAction"), REGULAR))
_REFERENCE = re.compile(rb"(\d{1,10})[\x00\t\n\f\r ]+(\d{1,5})[\x00\t\n\f\r ]+R(?!%s)" % REGULAR)
_ACTION_TYPE = re.compile(rb"/S[\x00\t\n\f\r ]*/(%s*)" % REGULAR)
_NEXT = re.compile(rb"/Next(?!%s)" % REGULAR)
_BRACKETS = re.compile(rb"<<|>>")


def harmless(value: bytes | memoryview, whole: bytes) -> bool:
    """Whether the ``/OpenAction`` whose value starts ``value`` is a destination or a lone ``/GoTo`` (an indirect
    one looked up in ``whole``, the file's bytes)."""
    value = bytes(value[:MAX_VALUE])
    if value.startswith((b"[", b"null")):
        return True
    if value.startswith(b"<<"):
        return _lone_goto(value)
    reference = _REFERENCE.match(value)
    if reference is None:
        return False
    target = re.search(rb"(?<!\d)%s[\x00\t\n\f\r ]+%s[\x00\t\n\f\r ]+obj[\x00\t\n\f\r ]*" % reference.groups(), whole)
    if target is None:
        return False
    body = whole[target.end() : target.end() + MAX_VALUE]
    return body.startswith(b"[") or (body.startswith(b"<<") and _lone_goto(body))


def _lone_goto(value: bytes) -> bool:
    """Whether the dictionary ``value`` starts with is a ``/GoTo`` action and nothing chained after it."""
    depth = 0
    for bracket in _BRACKETS.finditer(value):
        depth += 1 if bracket.group() == b"<<" else -1
        if depth == 0:
            break
    else:
        return False  # longer than is read: not told
    at = bracket.end()
    dictionary = unescape(value[:at])
    kinds = _ACTION_TYPE.findall(dictionary)
    return kinds == [b"GoTo"] and _NEXT.search(dictionary) is None
