"""The verdict on one stored event, as a person checking a picture asks for it: do the bytes the court stored
verbatim verify, with :mod:`seal_protocol`, against a key the seal was enrolled with?

The event's row holds the signed envelope exactly as received (``events.raw``); the check re-reads those bytes, not
the columns derived from them. The keys come from the caller (the seal's current enrolled key first, then any key it
was enrolled with before, newest first): a seal that was re-provisioned keeps its older events verifiable, and the
verdict says which key verified. Pure: no database, no files.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from seal_protocol import Envelope, InvalidEnvelope, SignatureError, decode_envelope
from seal_protocol.signing import verify_envelope, verify_key_from_b64


@dataclass(frozen=True)
class SignatureVerdict:
    """``verified``: the stored bytes are a canonical envelope of ``device_id`` and ``seq`` signed by one of the
    keys. ``key_sha256``: the fingerprint (SHA-256 of the raw key, hex) of the key that verified, else of the
    current key. ``current_key``: it was the seal's current key. ``problem``: why not, if not. ``envelope``: the
    envelope the bytes hold (``None`` if they hold none)."""

    verified: bool
    key_sha256: str | None
    current_key: bool
    problem: str | None
    envelope: Envelope | None = None

    def names_snapshot(self, sha256: str) -> bool:
        """Whether the *signed* payload lists the picture ``sha256`` (not merely the stored JSON column)."""
        if not self.verified or self.envelope is None:
            return False
        listed = self.envelope.payload.get("snapshots")
        return isinstance(listed, list) and sha256 in listed


def key_fingerprint(public_key_b64: str) -> str:
    """SHA-256 (hex) of the raw 32 key bytes: what the enrolment record and the seal's label show."""
    return hashlib.sha256(base64.b64decode(public_key_b64)).hexdigest()


def verify_stored_event(raw: bytes, *, device_id: str, seq: int, keys: Sequence[str]) -> SignatureVerdict:
    """The verdict on the stored bytes ``raw`` of event ``seq`` of ``device_id`` with ``keys`` (base64, the current
    one first)."""
    current = key_fingerprint(keys[0]) if keys else None
    try:
        envelope = decode_envelope(raw)
    except InvalidEnvelope as exc:
        return SignatureVerdict(False, current, False, f"the stored bytes are no envelope: {exc}")
    if envelope.device_id != device_id or envelope.seq != seq:
        problem = f"the stored bytes are event {envelope.seq} of {envelope.device_id}, not {seq} of {device_id}"
        return SignatureVerdict(False, current, False, problem, envelope)
    for index, text in enumerate(keys):
        try:
            verify_envelope(envelope, verify_key_from_b64(text))
        except SignatureError:
            continue
        return SignatureVerdict(True, key_fingerprint(text), index == 0, None, envelope)
    problem = "the signature does not verify with any key the seal was enrolled with" if keys else "no key enrolled"
    return SignatureVerdict(False, current, False, problem, envelope)
