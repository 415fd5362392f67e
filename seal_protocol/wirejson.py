"""The JSON the wire admits, and its one canonical encoding.

Every signed message (event envelopes, commands, receipts) and the status message are JSON objects restricted to
what any language can rebuild byte for byte:

- UTF-8, no byte-order mark; one object; no duplicate keys anywhere;
- numbers are integers only, written in plain decimal (no fraction, no exponent, no leading zeros, no ``-0``),
  between ``-(2**53 - 1)`` and ``2**53 - 1``; ``NaN``/``Infinity`` are not JSON and are refused;
- strings are Unicode scalar values: no lone surrogates (an escaped ``"\\ud800"``) and no U+0000;
- nesting at most :data:`MAX_DEPTH` levels.

The canonical encoding (:func:`canonical_json`): keys sorted by code point, separators ``,`` and ``:`` with no
whitespace, non-ASCII characters written as themselves, ``"`` and ``\\`` escaped with a backslash, the control
characters U+0008, U+0009, U+000A, U+000C, U+000D as ``\\b \\t \\n \\f \\r`` and the other ones below U+0020 as
``\\u00xx`` (lowercase hex); nothing else is escaped. For the values admitted above with ASCII keys this is the
JSON Canonicalization Scheme (RFC 8785) as well (``tests/protocol/test_canonical_rfc8785.py`` checks it against the
``rfc8785`` package). The encoder stays the standard library's: it is C code, about four times faster than that
pure-Python package on an event, and the server encodes every event it receives.
"""

from __future__ import annotations

import json
import re
from typing import Any

from seal_protocol.errors import InvalidEnvelope

#: The largest integer every JSON implementation represents exactly (an IEEE 754 double's 53-bit mantissa).
MAX_SAFE_INTEGER = 2**53 - 1
#: Objects and arrays nested deeper than this are refused (an event's own fields are level 1).
MAX_DEPTH = 16
_MAX_INT_DIGITS = len(str(MAX_SAFE_INTEGER)) + 1  # with a minus sign
_FORBIDDEN_CHARS = re.compile("[\x00\ud800-\udfff]")
#: A ``\\u`` escape of U+0000 or of a surrogate (high or low, D800-DFFF), not itself escaped (an even number of
#: backslashes before it).
_FORBIDDEN_ESCAPE = re.compile(r"(?<!\\)(?:\\\\)*\\u(?:0000|[dD][89a-fA-F][0-9a-fA-F]{2})")
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_INNERMOST = re.compile(r"\[[^\[\]{}]*\]|\{[^\[\]{}]*\}")
_BRACKET = re.compile(r"[\[\]{}]")
_KEY = re.compile(r"[\x20-\x7e]*")


def canonical_json(obj: Any) -> bytes:
    """Encode ``obj`` as canonical JSON bytes (see the module docstring)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")


def loads_wire_json(data: bytes, *, what: str = "message") -> Any:
    """Parse ``data`` as wire JSON; raise :class:`InvalidEnvelope` (code ``invalid_utf8`` or ``invalid_json``).

    Every rule is checked on the text or by the parser's own hooks, at the speed of the C scanner, so that a large
    hostile message costs about what parsing it costs: the result needs no walk of :func:`check_wire_value`.
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidEnvelope(f"invalid UTF-8 at byte {exc.start} of the {what}", "invalid_utf8") from None
    # In valid JSON, U+0000 and surrogates can only come from \u escapes (raw control characters and raw
    # surrogates are refused by the parser and the UTF-8 decoder): look for those escapes in the text.
    escape = _FORBIDDEN_ESCAPE.search(text) if "\\u" in text else None  # most messages hold no \u escape at all
    if escape is not None:
        raise InvalidEnvelope(
            f"invalid JSON: {escape.group()[-6:]} at character {escape.end() - 6} (NUL, and surrogate escapes: a lone "
            "surrogate is no character, a pair is not the canonical form)",
            "invalid_json",
        )
    if _nesting_exceeds(text, MAX_DEPTH):
        raise InvalidEnvelope(f"invalid JSON: the {what} nests deeper than {MAX_DEPTH} levels", "invalid_json")
    try:
        return json.loads(text, object_pairs_hook=_object, parse_float=_no_float, parse_int=_int, parse_constant=_no)
    except RecursionError:  # cannot happen after the nesting check; kept so that no input can raise it
        raise InvalidEnvelope(f"invalid JSON: the {what} is nested too deeply", "invalid_json") from None
    except _NonCanonicalNumber as exc:  # valid JSON, but not the one spelling the protocol signs
        raise InvalidEnvelope(f"not the canonical encoding: {exc}", "non_canonical") from None
    except ValueError as exc:  # json.JSONDecodeError is a ValueError; so are the refusals of the hooks
        raise InvalidEnvelope(f"invalid JSON: {exc}", "invalid_json") from None


def _nesting_exceeds(text: str, limit: int) -> bool:
    """Do arrays and objects in the JSON ``text`` nest deeper than ``limit``? (Strings removed, then innermost
    brackets removed level by level: at most ``limit + 1`` passes of a regular expression.)"""
    if text.count("[") + text.count("{") <= limit:  # no deeper than the brackets it holds (in strings or not)
        return False
    skeleton = _STRING.sub("0", text)
    for _level in range(limit):
        skeleton, found = _INNERMOST.subn("0", skeleton)
        if not found:
            return False
    return _BRACKET.search(skeleton) is not None


def check_wire_value(obj: Any, *, what: str = "message") -> None:
    """Raise :class:`InvalidEnvelope` unless ``obj`` (a parsed or a to-be-encoded value) is admitted on the wire."""
    stack: list[tuple[Any, int]] = [(obj, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict | list) and depth > MAX_DEPTH:
            raise InvalidEnvelope(f"invalid JSON: the {what} nests deeper than {MAX_DEPTH} levels", "invalid_json")
        if isinstance(value, dict):
            for key, item in value.items():
                if not isinstance(key, str) or not _KEY.fullmatch(key):
                    raise InvalidEnvelope(f"invalid JSON: object keys are printable ASCII: {key!r}", "invalid_json")
                stack.append((item, depth + 1))
        elif isinstance(value, list):
            stack.extend((item, depth + 1) for item in value)
        elif isinstance(value, str):
            _check_text(value)
        elif isinstance(value, bool) or value is None:
            pass
        elif isinstance(value, int):
            if not -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
                raise InvalidEnvelope(f"invalid JSON: integer out of range ±(2**53 - 1): {value}", "invalid_json")
        else:
            raise InvalidEnvelope(f"invalid JSON: {type(value).__name__} values are not admitted", "invalid_json")


def check_exact_fields(obj: Any, fields: dict[str, tuple[type, ...]], *, what: str) -> dict[str, Any]:
    """Return ``obj`` if it is an object with exactly ``fields``, each of one of its exact JSON types (``bool`` is
    not an ``int`` here, nor is ``"15"``); else raise :class:`InvalidEnvelope` (code ``invalid_envelope``)."""
    if not isinstance(obj, dict):
        raise InvalidEnvelope(f"invalid {what}: expected a JSON object, got {_json_type(obj)}")
    missing = sorted(fields.keys() - obj.keys())
    unknown = sorted(obj.keys() - fields.keys())
    if missing or unknown:
        parts = [f"missing field(s) {missing}" if missing else "", f"unknown field(s) {unknown}" if unknown else ""]
        raise InvalidEnvelope(f"invalid {what}: " + "; ".join(p for p in parts if p))
    for name, types in fields.items():
        value = obj[name]
        if type(value) not in types:
            expected = " or ".join(_json_type_name(t) for t in types)
            raise InvalidEnvelope(f"invalid {what}: {name}: expected {expected}, got {_json_type(value)}")
    return obj


_JSON_NAMES: dict[type, str] = {
    int: "an integer",
    str: "a string",
    dict: "an object",
    list: "an array",
    bool: "true/false",
    type(None): "null",
}


def _json_type_name(kind: type) -> str:
    return _JSON_NAMES.get(kind, kind.__name__)


def _json_type(value: Any) -> str:
    return _json_type_name(type(value))


def _check_text(text: str) -> None:
    bad = _FORBIDDEN_CHARS.search(text)
    if bad is not None:
        raise InvalidEnvelope(
            f"invalid JSON: a string holds U+{ord(bad.group()):04X} (a lone surrogate or NUL is not admitted)",
            "invalid_json",
        )


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        duplicate = next(key for key, _ in pairs if key in seen or seen.add(key))  # type: ignore[func-returns-value]
        raise ValueError(f"duplicate key {duplicate!r}")
    for key in result:
        if not (key.isascii() and key.isprintable()):  # what _KEY matches, without a regular expression per key
            raise ValueError(f"object keys are printable ASCII: {key[:40]!r}")
    return result


class _NonCanonicalNumber(ValueError):
    """A number JSON admits in a spelling canonical JSON never writes (``-0``)."""


def _int(text: str) -> int:
    if text == "-0":  # refused here, before any field's own bounds could give it another reason
        raise _NonCanonicalNumber("-0 is written 0")
    if len(text) > _MAX_INT_DIGITS:  # also keeps int() from parsing thousands of digits
        raise ValueError(f"integer out of range ±(2**53 - 1): {text[:24]}…")
    value = int(text)
    if not -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
        raise ValueError(f"integer out of range ±(2**53 - 1): {text}")
    return value


def _no_float(text: str) -> Any:
    raise ValueError(f"only integers are admitted, not {text[:24]!r}")


def _no(name: str) -> Any:
    raise ValueError(f"{name} is not allowed")
