"""What a seal's refusal of a command says happened, for whoever words it (the case page, the alarms, the evidence
report): a refusal of bytes the seal could not verify (``malformed``, ``unsigned``, ``bad_signature``) whose
``sha256`` is that of the very bytes the court signed and published as the command is the seal refusing the court's
own command — it could not verify the court's signature (it pins another court key) or read the command — and not a
refusal of forged bytes, which settles nothing (``docs/protocol.md``, "Commands").
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from typing import Any

from sqlalchemy.orm import Session

from seal_protocol import Envelope
from seal_protocol.commands import UNVERIFIED_REASONS
from seal_protocol.wirejson import MAX_SAFE_INTEGER
from server.commands.models import CourtCommand

#: The words' section for a refusal of the court's own command that the seal could not verify, by reason.
OWN_BYTES_SECTION = "case_command_refused_own"


_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


def same_sha256(claimed: object, own: str | None) -> bool:
    """Whether ``claimed``, a digest a seal signed (any JSON value), is the SHA-256 (lowercase hex) ``own``. Anything
    else — not a string, not 64 hex digits, non-ASCII — is simply not it: never an error (``hmac.compare_digest``
    raises on non-ASCII strings, which made a seal's signed event unstorable)."""
    return (
        own is not None
        and isinstance(claimed, str)
        and _SHA256_HEX.fullmatch(claimed) is not None
        and hmac.compare_digest(claimed, own)
    )


def signed_sha256(signed: bytes | None) -> str | None:
    """The SHA-256 (hex) of the command bytes the court signed and published; ``None`` if there are none."""
    return hashlib.sha256(signed).hexdigest() if signed else None


def refused_own_bytes(payload: Mapping[str, Any] | None, command_sha256: str | None) -> bool:
    """Whether the refusal ``payload`` (a ``command_rejected``'s) is one of bytes the seal could not verify whose
    ``sha256`` is ``command_sha256``, the SHA-256 of the command the court signed: the seal refused the court's own
    command because it could not verify or read it."""
    if payload is None or command_sha256 is None:
        return False
    reason = payload.get("reason")
    return (
        isinstance(reason, str) and reason in UNVERIFIED_REASONS and same_sha256(payload.get("sha256"), command_sha256)
    )


def refused_our_bytes(session: Session, envelope: Envelope, command_id: int | None) -> bool:
    """Whether an unverified refusal's ``sha256`` is the SHA-256 of the very bytes the court signed and published as
    ``command_id`` to this seal: a seal that cannot verify the court's own command (it pins another court key, or is
    too old to read it) refused it, and the command is settled as refused. Forged bytes cannot match."""
    digest = envelope.payload.get("sha256")
    if command_id is None or not isinstance(digest, str) or not 1 <= command_id <= MAX_SAFE_INTEGER:
        return False
    row = session.get(CourtCommand, command_id, with_for_update=True)
    return (
        row is not None
        and row.device_id == envelope.device_id
        and refused_own_bytes(envelope.payload, signed_sha256(row.signed))
    )
