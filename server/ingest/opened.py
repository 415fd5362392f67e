"""What opening an event is — decoding its bytes and checking its signature against its seal's key — and the shape
of the answer, the same whether the ingest's thread or its verifier process (:mod:`server.ingest.verifier`) opens
it."""

from __future__ import annotations

from seal_protocol import Envelope, InvalidEnvelope, decode_signed_envelope
from seal_protocol.signing import SignatureError, VerifyKey, verify_bytes

#: An event to open: the key (32 bytes) its seal had at the ingest's last transaction, the message's bytes.
Job = tuple[bytes, bytes]
#: An event opened: its envelope, the bytes its signature covers, and why the signature does not verify against the
#: key (None: it does).
Opened = tuple[Envelope, bytes, str | None]
#: An event whose bytes are refused: :class:`InvalidEnvelope`'s code and text.
Refused = tuple[str, str]
Answer = Opened | Refused


def open_event(key: VerifyKey, data: bytes) -> Answer:
    """Decode the bytes of an event (:func:`decode_signed_envelope`) and check its signature against ``key``."""
    try:
        envelope, signed = decode_signed_envelope(data)
    except InvalidEnvelope as exc:
        return exc.code, str(exc)
    return envelope, signed, check(key, signed, envelope.sig)


def refusal(answer: Answer) -> InvalidEnvelope | None:
    """The decoding's refusal an answer carries, if it is one."""
    if len(answer) == 2:
        code, text = answer
        return InvalidEnvelope(text, code)
    return None


def well_formed(answer: object) -> bool:
    """An answer of the verifier process has the shape of :data:`Answer` (its values come from this very code)."""
    if not isinstance(answer, tuple):
        return False
    if len(answer) == 2:
        return all(isinstance(part, str) for part in answer)
    return (
        len(answer) == 3
        and isinstance(answer[0], Envelope)
        and isinstance(answer[1], bytes)
        and (answer[2] is None or isinstance(answer[2], str))
    )


def check(key: VerifyKey, signed: bytes, sig: str | None) -> str | None:
    """Why the signature ``sig`` of ``signed`` does not verify against ``key``; None if it does."""
    try:
        verify_bytes(key, signed, sig)
    except SignatureError as exc:
        return str(exc)
    return None
