"""The checks of a message that need no transaction, and the case check of an event.

:func:`prepare` runs before the batch's transaction begins, so that neither decoding nor Ed25519 holds the
database's write lock: the topic parses; a snapshot's bytes are a JPEG of the size and hash its topic says
(:func:`snapshot_refusal`; the picture is then written to its store before the transaction too,
:mod:`server.ingest.snapshot_writes`); the envelope decodes (size, UTF-8, JSON, schema, canonical form); its
``device_id`` equals the topic's; and the signature is checked against the key the topic's seal had at the worker's
last transaction (:class:`~server.ingest.seal_cache.IngestCache`); a batch's events are decoded and checked partly
by the verifier process (:mod:`server.ingest.verifier`). :class:`~server.ingest.batch.IngestBatch` then reads the
seal's row and checks again, in the protocol's order, whatever that row changes: an unknown seal, or a key
other than the one tried (then the signature is verified again with the stored key).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import cast

from seal_protocol import (
    MAX_ENVELOPE_BYTES,
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
from server.ingest.opened import Answer, Opened, check, open_event, refusal
from server.ingest.results import Message, Reason, Rejected, classify_envelope_error
from server.ingest.seal_cache import IngestCache, SealRow
from server.ingest.verifier import Verifier
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


#: An event to open (decode and check): its topic, and the key (base64 and parsed) the topic's seal had.
_ToOpen = tuple[ParsedTopic, str, VerifyKey]


def prepare(message: Message, cache: IngestCache) -> Prepared:
    """The checks of one message that need no transaction, made here."""
    triaged = _triage(message, cache)
    if isinstance(triaged, Prepared):
        return triaged
    topic, key_text, key = triaged
    return opened(topic, key_text, open_event(key, message.payload))


def prepare_all(messages: Sequence[Message], cache: IngestCache, verifier: Verifier) -> list[Prepared]:
    """:func:`prepare` of each message, the events decoded and checked by ``verifier`` while the next are added."""
    return Opening(messages, cache, verifier).prepared()


class Opening:
    """:func:`prepare_all` in steps: made, it has handed the batch's events to ``verifier``, which opens them
    meanwhile; :meth:`collect` takes the answers — before another batch's events may be handed over (the verifier
    answers one batch at a time) — and :meth:`prepared` gives the messages prepared. ``ahead``: the batch is opened
    ahead of its turn, while the one before it is stored; every event goes to the verifier process, whose answers
    will be there by then (else the last few are opened here, at :meth:`collect`, rather than wait for them)."""

    def __init__(self, messages: Sequence[Message], cache: IngestCache, verifier: Verifier, *, ahead: bool = False):
        self._checks = verifier.checks(ahead=ahead)
        self._prepared: list[Prepared] | None = None
        self._failure: Exception | None = None
        try:
            self._triaged = []
            for message in messages:
                self._triaged.append(one := _triage(message, cache))
                if not isinstance(one, Prepared):
                    self._checks.add(one[2], message.payload)
            if ahead:
                self._checks.send_all()
        except BaseException:
            self._checks.abandon()
            raise

    def collect(self) -> None:
        """Take the answers (once); what goes wrong is raised by :meth:`prepared`."""
        if self._prepared is not None or self._failure is not None:
            return
        try:
            answers = iter(self._checks.results())  # one per event added, in order
            self._prepared = [
                one if isinstance(one, Prepared) else opened(one[0], one[1], next(answers)) for one in self._triaged
            ]
        except Exception as exc:  # noqa: BLE001 - raised by prepared(), where the ingest deals with it
            self._failure = exc.with_traceback(None)

    def abandon(self) -> None:
        """The batch will not be stored now (the ingest stops): let go of the verifier without waiting for it."""
        if self._prepared is None and self._failure is None:
            self._checks.abandon()
            self._failure = RuntimeError("the batch's opening was abandoned")

    def prepared(self) -> list[Prepared]:
        """Each message prepared, in order."""
        self.collect()
        if self._prepared is None:
            assert self._failure is not None
            raise self._failure
        return self._prepared


def _triage(message: Message, cache: IngestCache) -> Prepared | _ToOpen:
    """A message refused or prepared at once, or an event to open with its seal's key."""
    try:
        topic = parse_topic(message.topic)
    except InvalidTopic as exc:
        return Prepared(Rejected(Reason.INVALID_TOPIC, str(exc)))
    if topic.kind is MessageKind.SNAPSHOT:
        refused = snapshot_refusal(topic, message.payload)
        return Prepared(topic if refused is None else refused)
    if topic.kind is not MessageKind.EVENT:
        return Prepared(topic)
    key_text, key = cache.key_text(topic.device_id), cache.key_of(topic.device_id)
    if key_text is not None and key is not None and len(message.payload) <= MAX_ENVELOPE_BYTES:
        return topic, key_text, key
    # A seal not heard of yet (its key is read in the transaction, and the signature checked then), or bytes that
    # are refused unread: decoded here.
    try:
        envelope, signed = _decoded(topic, message)
    except Rejected as rejected:
        return Prepared(rejected.kept())
    return Prepared(envelope, signing_bytes=signed)


def opened(topic: ParsedTopic, key: str, answer: Answer) -> Prepared:
    """The event of an :class:`Answer` to the topic's seal's key ``key``: refused if its bytes are, or if it names
    another seal than its topic (whatever its signature: the topic's key was the one tried)."""
    invalid = refusal(answer)
    if invalid is not None:
        return Prepared(Rejected(classify_envelope_error(invalid), str(invalid)))
    envelope, signed, problem = cast(Opened, answer)
    if envelope.device_id != topic.device_id:
        return Prepared(_device_mismatch(envelope, topic))
    return Prepared(envelope, key, problem, signed)


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
        raise _device_mismatch(envelope, topic)
    return envelope, signed


def _device_mismatch(envelope: Envelope, topic: ParsedTopic) -> Rejected:
    return Rejected(
        Reason.DEVICE_MISMATCH,
        f"envelope device_id {envelope.device_id!r} differs from the topic's {topic.device_id!r}",
    )


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
