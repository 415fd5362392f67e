"""A PDF's ``/OpenAction``: what a reader does when the file is opened. A destination (an array: the first page's
view) or a ``/GoTo`` action is harmless; any other action — a URI (a beacon telling who opened the file, and when),
a named menu item, a sound, an action chained after a ``/GoTo`` with ``/Next`` — is refused, as is one this check
cannot see. An indirect one (``/OpenAction 5 0 R``) is harmless only if every definition of its object is — each
``5 0 obj`` in the file's bytes (an incremental update's redefinition is the one a reader takes) and each in an
object stream (:func:`wanted_offsets`) — and there is at least one. Not a parser: a value is read as far as
:data:`MAX_VALUE` bytes."""

from __future__ import annotations

import re

from server.removal.pdf_names import REGULAR, SEPARATORS, spelling, unescape

#: How far after ``/OpenAction`` (or after ``n g obj``) its value is read.
MAX_VALUE = 4096
#: How much of an object stream's header is read (a header of this many bytes lists some 100,000 objects).
MAX_HEAD = 1024 * 1024

OPEN_ACTION = re.compile(rb"/%s(?!%s)[\x00\t\n\f\r ]*" % (spelling(b"OpenAction"), REGULAR))
_REFERENCE = re.compile(rb"(\d{1,10})[\x00\t\n\f\r ]+(\d{1,5})[\x00\t\n\f\r ]+R(?!%s)" % REGULAR)
_ACTION_TYPE = re.compile(rb"/S[\x00\t\n\f\r ]*/(%s*)" % REGULAR)
_NEXT = re.compile(rb"/Next(?!%s)" % REGULAR)
_BRACKETS = re.compile(rb"<<|>>")
_APART = rb"(?=[\x00\t\n\f\r %%])%s" % SEPARATORS
#: An object stream's ``/First``, given directly (not ``/First 7 0 R``).
_FIRST = re.compile(
    rb"/%s(?!%s)%s(\d{1,10})(?![\d.])(?!%s\d{1,5}%sR(?!%s))"
    % (spelling(b"First"), REGULAR, SEPARATORS, _APART, _APART, REGULAR)
)
_FIRST_KEY = re.compile(rb"/%s(?!%s)" % (spelling(b"First"), REGULAR))
#: The pairs ``number offset`` an object stream's data starts with.
PAIRS = re.compile(rb"(?:[\x00\t\n\f\r ]*+\d{1,10}[\x00\t\n\f\r ]++\d{1,20})++")
_NUMBER = re.compile(rb"\d+")


def harmless(value: bytes | memoryview, whole: bytes, references: dict[int, int]) -> bool:
    """Whether the ``/OpenAction`` whose value starts ``value`` is a destination or a lone ``/GoTo``. An indirect one
    is looked up in ``whole``, the file's bytes: ``False`` if a definition there is not harmless; if it may be in an
    object stream (generation 0), its number is added to ``references`` with how many definitions were seen, for
    the caller to look in the object streams and to refuse if there are none."""
    value = bytes(value[:MAX_VALUE])
    if value.startswith((b"[", b"null")):
        return True
    if value.startswith(b"<<"):
        return _lone_goto(value)
    reference = _REFERENCE.match(value)
    if reference is None:
        return False
    number, generation = int(reference.group(1)), int(reference.group(2))
    found = 0
    definition = re.compile(
        rb"(?<!\d)0*%d%s0*%d%sobj(?!%s)%s" % (number, _APART, generation, _APART, REGULAR, SEPARATORS)
    )
    for target in definition.finditer(whole):
        found += 1
        if not value_harmless(whole[target.end() : target.end() + MAX_VALUE]):
            return False
    if generation != 0:
        return found > 0
    references[number] = references.get(number, 0) + found
    return True


def value_harmless(body: bytes | memoryview) -> bool:
    """Whether the object ``body`` starts with is a destination or a lone ``/GoTo`` action."""
    body = bytes(body[:MAX_VALUE]).lstrip(b"\x00\t\n\f\r ")
    return body.startswith(b"[") or (body.startswith(b"<<") and _lone_goto(body))


def wanted_offsets(
    dictionary: bytes | memoryview, head: bytes, references: dict[int, int]
) -> list[tuple[int, int]] | None:
    """Where, in the decoded data of the stream with ``dictionary`` (``head``: its first bytes, up to
    :data:`MAX_HEAD`), the objects numbered in ``references`` are, if it is an object stream: ``(number, where)``
    pairs, ``[]`` if it defines none of them, ``None`` if it may and where cannot be told (its ``/First`` not given
    directly, or its header longer than is read)."""
    run = PAIRS.match(head)
    if run is None:
        return []
    tokens = _NUMBER.findall(run.group())
    pairs = [(int(n), int(o)) for n, o in zip(tokens[0::2], tokens[1::2], strict=False) if int(n) in references]
    if run.end() >= MAX_HEAD:
        return None
    if not pairs:
        return []
    firsts = {int(m.group(1)) for m in _FIRST.finditer(dictionary)}
    if len(firsts) != 1 or len(_FIRST_KEY.findall(dictionary)) != 1:
        return None
    first = firsts.pop()
    return [(number, first + offset) for number, offset in pairs]


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
