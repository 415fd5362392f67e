"""The notice token in a notice's QR code: what it carries, how it is signed, and its verification (a pure function).

A token is ``base64url(payload) "." base64url(signature)``, both without padding. The payload is a JSON object in
RFC 8785 canonical form (keys sorted, no white space, UTF-8) with exactly these members:

- ``v``: 1, the format's version;
- ``k``: the id of the key that signed it (:func:`server.notices.keys.key_id`);
- ``n``: the notice's id; ``d``: the seal's device id; ``c``: the case number (案号);
- ``i``: issued at and ``x``: expires at, in Unix seconds (UTC);
- ``h``: base64url (no padding) of the SHA-256 of the notice's facts as printed (:mod:`server.notices.facts`).

The signature is Ed25519 over :data:`CONTEXT` followed by the payload bytes as they are in the token, so a verifier
never rebuilds JSON. ``docs/notice.md`` describes the same for a third party.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from nacl.exceptions import BadSignatureError, CryptoError

from seal_protocol.signing import SigningKey, VerifyKey
from server.notices.keys import key_id

VERSION = 1
#: Signed before the payload: a notice key's signature can never be taken for one of anything else.
CONTEXT = b"court-seal notice token v1\n"
#: A token longer than this is not looked at (a real one is about 300 characters).
MAX_TOKEN_CHARS = 1024
SIGNATURE_BYTES = 64
_B64URL = re.compile(r"^[A-Za-z0-9_-]*$")
_MEMBERS = {"v": int, "k": str, "n": int, "d": str, "c": str, "i": int, "x": int, "h": str}
_MAX_INT = 2**53 - 1  # exact in every JSON implementation (RFC 8785 § 3.2.2.3)


class Refusal(StrEnum):
    """Why a token is not an authentic, current notice of this court (the first four from the token alone, the rest
    from the court's record of its notices: a genuine notice of this court that no longer stands)."""

    MALFORMED = "malformed"  # not a token: truncated, not base64url, not the payload's form
    FOREIGN_KEY = "foreign_key"  # signed by another key than this court's notice key
    TAMPERED = "tampered"  # this court's key id, but the signature does not match the payload
    EXPIRED = "expired"
    UNKNOWN = "unknown"  # signed, but the court has no such notice on record
    SUPERSEDED = "superseded"  # a newer notice for the seal replaced it
    REVOKED = "revoked"  # revoked by the court (a clerk), or its seal was taken off the case
    LIFTED = "lifted"  # the seizure was lifted: the seals are off and the notice no longer stands
    OUTDATED = "outdated"  # genuine and standing, but the court's record changed: its term ended, or its facts


@dataclass(frozen=True)
class NoticeClaims:
    """What a token says."""

    notice_id: int
    device_id: str
    case_no: str
    issued_at: datetime
    expires_at: datetime
    facts_sha256: bytes
    key_id: str


@dataclass(frozen=True)
class TokenCheck:
    """The verdict on a token: ``claims`` whenever the signature is this court's (also when expired),
    ``refusal`` ``None`` when it verifies."""

    refusal: Refusal | None
    claims: NoticeClaims | None = None
    detail: str = ""

    @property
    def valid(self) -> bool:
        return self.refusal is None


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """The bytes of unpadded base64url ``text``; :class:`ValueError` unless it is exactly that (canonical)."""
    if not _B64URL.match(text) or len(text) % 4 == 1:
        raise ValueError("not unpadded base64url")
    data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if b64url(data) != text:
        raise ValueError("not canonical base64url (unused bits set)")
    return data


def canonical_json(value: dict[str, Any]) -> bytes:
    """RFC 8785 form of an object of strings, safe integers, ``None`` and such objects: sorted keys, no white space,
    UTF-8 (for these types Python's encoder with these options writes exactly the JCS bytes)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def sign_token(claims: NoticeClaims, key: SigningKey) -> str:
    """The token of ``claims``, signed with ``key`` (whose id must be ``claims.key_id``). Ed25519 is deterministic:
    the same claims and key always give the same token, so a notice can be printed again identically."""
    if claims.key_id != key_id(key.verify_key):
        raise ValueError("the claims name another key than the one signing them")
    payload = canonical_json(
        {
            "v": VERSION,
            "k": claims.key_id,
            "n": claims.notice_id,
            "d": claims.device_id,
            "c": claims.case_no,
            "i": _unix(claims.issued_at),
            "x": _unix(claims.expires_at),
            "h": b64url(claims.facts_sha256),
        }
    )
    signature = key.sign(CONTEXT + payload).signature
    return f"{b64url(payload)}.{b64url(signature)}"


def verify_token(token: str, keys: Sequence[VerifyKey], *, now: datetime) -> TokenCheck:
    """Check ``token`` against the court's notice keys (the current one and its retired ones) at time ``now``;
    never raises, whatever the string."""
    try:
        payload, signature, claims = _parse(token)
    except ValueError as exc:
        return TokenCheck(Refusal.MALFORMED, detail=str(exc))
    key = next((k for k in keys if key_id(k) == claims.key_id), None)
    if key is None:
        return TokenCheck(Refusal.FOREIGN_KEY, detail=f"signed by key {claims.key_id}, not this court's notice key")
    try:
        key.verify(CONTEXT + payload, signature)
    except (BadSignatureError, CryptoError, ValueError):
        return TokenCheck(Refusal.TAMPERED, detail="the signature does not match the token's content")
    if now >= claims.expires_at:
        return TokenCheck(Refusal.EXPIRED, claims, f"expired at {claims.expires_at.isoformat()}")
    return TokenCheck(None, claims)


def _parse(token: str) -> tuple[bytes, bytes, NoticeClaims]:
    if len(token) > MAX_TOKEN_CHARS:
        raise ValueError(f"longer than {MAX_TOKEN_CHARS} characters")
    parts = token.split(".")
    if len(parts) != 2:
        raise ValueError("not two base64url parts joined by '.'")
    payload, signature = b64url_decode(parts[0]), b64url_decode(parts[1])
    if len(signature) != SIGNATURE_BYTES:
        raise ValueError(f"the signature has {len(signature)} bytes, not {SIGNATURE_BYTES}")
    try:
        members = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise ValueError("the payload is not JSON") from None
    if not isinstance(members, dict) or set(members) != set(_MEMBERS):
        raise ValueError("the payload does not have exactly the members v, k, n, d, c, i, x, h")
    for name, kind in _MEMBERS.items():
        value = members[name]
        if type(value) is not kind:
            raise ValueError(f"the payload's {name!r} is not a{'n integer' if kind is int else ' string'}")
        if isinstance(value, int) and not 0 <= value <= _MAX_INT:
            raise ValueError(f"the payload's {name!r} is out of range")
    if members["v"] != VERSION:
        raise ValueError(f"token format version {members['v']}, not {VERSION}")
    digest = b64url_decode(members["h"])
    if len(digest) != 32:
        raise ValueError("the facts' hash is not 32 bytes")
    claims = NoticeClaims(
        notice_id=members["n"],
        device_id=members["d"],
        case_no=members["c"],
        issued_at=_moment(members["i"]),
        expires_at=_moment(members["x"]),
        facts_sha256=digest,
        key_id=members["k"],
    )
    return payload, signature, claims


def _unix(moment: datetime) -> int:
    if moment.tzinfo is None:
        raise ValueError("naive datetime: give a timezone-aware one")
    return int(moment.timestamp())


def _moment(seconds: int) -> datetime:
    try:
        return datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError):
        raise ValueError("a time out of range") from None
