"""The checks of a message that need no transaction, and the case check of an event.

:func:`prepare` runs before the batch's transaction begins, so that neither decoding nor Ed25519 holds the
database's write lock: the topic parses; a snapshot's bytes are a JPEG of the size and hash its topic says
(:func:`snapshot_refusal`; the picture is then written to its store before the transaction too,
:mod:`server.ingest.snapshot_writes`); the envelope decodes (size, UTF-8, JSON, schema, canonical form); its
``device_id`` equals the topic's; and the signature is checked against the key the seal had at the worker's last
transaction (:class:`~server.ingest.seal_cache.IngestCache`). :class:`~server.ingest.batch.IngestBatch` then reads
the seal's row and checks again, in the protocol's order, whatever that row changes: an unknown seal, or a key
other than the one tried (then the signature is verified again with the stored key).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from seal_protocol import (
    Envelope,
    InvalidEnvelope,
    InvalidTopic,
    MessageKind,
    ParsedTopic,
    SignatureError,
    decode_signed_envelope,
    parse_topic,
)
from seal_protocol.signing import VerifyKey
from server.evidence.snapshot_files import MAX_SNAPSHOT_BYTES, jpeg_problem
from server.ingest.results import Message, Reason, Rejected, classify_envelope_error
from server.ingest.seal_cache import IngestCache, SealRow
from server.ingest.verifier import Checks, Verifier, check
from server.seals.case_numbers import case_no_spellings
from server.seals.models import SealBinding

#: How far a seal's clock may be off when its event is matched to a binding that has ended: an event stamped up to
#: this long before the binding began or after it ended still belongs to it. A seal's clock is NTP-synchronised, but
#: a Raspberry Pi has no real-time clock and starts from its last saved time until NTP answers.
BINDING_CLOCK_SKEW = timedelta(minutes=5)


@dataclass(frozen=True, slots=True)
class Prepared:
    """A message after the checks made outside the transaction: a refusal, a non-event topic, or an envelope whose
    signature was checked against ``key`` (``None``: the seal's key was not known yet)."""

    checked: Envelope | ParsedTopic | Rejected
    key: str | None = None
    problem: str | None = None  # why the signature did not verify against ``key``
    signing_bytes: bytes = b""  # of an envelope: the bytes its signature covers


#: The problem of a signature whose check has not been answered yet: a refusal, should it ever stay unanswered.
UNANSWERED = "signature check not answered"


def prepare(message: Message, cache: IngestCache, checks: Checks | None = None) -> Prepared:
    """``checks``: the batch's signature checks, answered later (:func:`prepare_all`); None: checked here."""
    try:
        topic = parse_topic(message.topic)
        if topic.kind is MessageKind.SNAPSHOT:
            refusal = snapshot_refusal(topic, message.payload)
            return Prepared(topic if refusal is None else refusal)
        if topic.kind is not MessageKind.EVENT:
            return Prepared(topic)
        envelope, signed = _decoded(topic, message)
    except InvalidTopic as exc:
        return Prepared(Rejected(Reason.INVALID_TOPIC, str(exc)))
    except Rejected as rejected:
        return Prepared(rejected.kept())
    key_text, key = cache.key_text(envelope.device_id), cache.key_of(envelope.device_id)
    if key_text is None or key is None:
        return Prepared(envelope, signing_bytes=signed)
    if checks is None:
        return Prepared(envelope, key_text, signature_problem(envelope, signed, key), signed)
    checks.add(key, signed, envelope.sig)
    return Prepared(envelope, key_text, UNANSWERED, signed)


def prepare_all(messages: Sequence[Message], cache: IngestCache, verifier: Verifier) -> list[Prepared]:
    """:func:`prepare` of each message, the signatures checked by ``verifier`` while the next ones are decoded."""
    checks = verifier.checks()
    prepared = [prepare(message, cache, checks) for message in messages]
    answers = iter(checks.results())  # one per check added: in order, one per prepared message with a key
    return [p if p.problem is not UNANSWERED else replace(p, problem=next(answers)) for p in prepared]


def snapshot_refusal(topic: ParsedTopic, payload: bytes) -> Rejected | None:
    """Why the bytes of a snapshot cannot be stored under ``topic`` (size, hash, JPEG), or ``None``."""
    if len(payload) > MAX_SNAPSHOT_BYTES:
        return Rejected(Reason.INVALID_SNAPSHOT, f"snapshot of {len(payload)} bytes, limit {MAX_SNAPSHOT_BYTES}")
    actual = hashlib.sha256(payload).hexdigest()
    if actual != topic.sha256:
        return Rejected(Reason.SNAPSHOT_MISMATCH, f"snapshot bytes hash to {actual}, the topic says {topic.sha256}")
    problem = jpeg_problem(payload)
    if problem is not None:
        return Rejected(Reason.INVALID_SNAPSHOT, f"not a JPEG image: {problem}")
    return None


def _decoded(topic: ParsedTopic, message: Message) -> tuple[Envelope, bytes]:
    try:
        envelope, signed = decode_signed_envelope(message.payload)
    except InvalidEnvelope as exc:
        raise Rejected(classify_envelope_error(exc), str(exc)) from None
    if envelope.device_id != topic.device_id:
        raise Rejected(
            Reason.DEVICE_MISMATCH,
            f"envelope device_id {envelope.device_id!r} differs from the topic's {topic.device_id!r}",
        )
    return envelope, signed


def signature_problem(envelope: Envelope, signing_bytes: bytes, key: VerifyKey) -> str | None:
    """Why the envelope's signature (over ``signing_bytes``, its :meth:`~Envelope.signing_bytes`) does not verify
    against ``key``; None if it does."""
    return check(key, signing_bytes, envelope.sig)


def check_signature(prepared: Prepared, envelope: Envelope, seal: SealRow, cache: IngestCache) -> None:
    """Raise ``bad_signature`` unless the envelope verifies against the key stored for ``seal`` now."""
    problem = prepared.problem
    if prepared.key != seal.public_key:  # not checked yet, or checked with a key that has changed since
        try:
            problem = signature_problem(envelope, prepared.signing_bytes, cache.verify_key(seal.public_key))
        except SignatureError as exc:  # the stored key is none: nothing verifies against it
            problem = str(exc)
    if problem is not None:
        raise Rejected(Reason.BAD_SIGNATURE, f"bad signature: {problem}")


def binding_covers(binding: SealBinding, case_no: str, ts: datetime, *, skew: timedelta = BINDING_CLOCK_SKEW) -> bool:
    """Was the seal bound to ``case_no`` by ``binding`` when it says the event happened (``ts``), give or take
    ``skew``?"""
    if binding.case_no != case_no or ts < binding.bound_at - skew:
        return False
    return binding.unbound_at is None or ts < binding.unbound_at + skew


def current_case(seal: SealRow, envelope: Envelope) -> str | None:
    """The seal's current case if the envelope names it (in any spelling), else None (look at its bindings)."""
    if seal.case_no is None:
        return None
    if envelope.case_no == seal.case_no or seal.case_no in case_no_spellings(envelope.case_no):
        return seal.case_no
    return None


def case_of_bindings(seal: SealRow, envelope: Envelope, bindings: list[SealBinding]) -> str:
    """The case of the binding (newest first) the event's time falls in; raise ``unbound_seal``/``wrong_case``."""
    spellings = case_no_spellings(envelope.case_no)
    ts = envelope.occurred_at
    for binding in bindings:
        if any(binding_covers(binding, spelling, ts) for spelling in spellings):
            return binding.case_no
    if seal.case_no is None:
        raise Rejected(
            Reason.UNBOUND_SEAL,
            f"seal {seal.device_id!r} is not bound to a case, nor was it bound to {envelope.case_no!r} at "
            f"{envelope.ts}",
        )
    raise Rejected(
        Reason.WRONG_CASE,
        f"seal bound to another case: the event says {envelope.case_no!r} at {envelope.ts}, the seal is bound "
        f"to {seal.case_no!r} and was not bound to {envelope.case_no!r} then",
    )
