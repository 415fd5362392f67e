"""The court's receipts: which committed messages each seal may now delete from its outbox. Pure, no MQTT.

A seal keeps an event or a snapshot until a signed receipt names the SHA-256 of its exact bytes
(:mod:`seal_protocol.receipts`). After a batch is committed, :func:`receipts_for` lists, per seal, the hashes of
the messages on its ``event`` and ``snapshot`` topics that the court now holds: a stored event, an identical
duplicate, a stored or duplicate snapshot, or a quarantine row for a check the message failed that keeps all its
bytes (:attr:`~server.ingest.results.IngestResult.bytes_kept`). Not receipted, so that the seal keeps them and sends
them again:

* a message quarantined for the court's own failure (``storage_error``, ``internal_error``): its row may lack the
  bytes, and a court that failed once may store the message properly next time;
* a message quarantined for what the court knows of the seal (``unknown_seal``, ``bad_signature``,
  ``unbound_seal``, ``wrong_case``): a clerk who registers the seal, corrects its enrolled key or its binding lets
  the seal's next copy into the case log, where a receipt would have left it in the quarantine for good;
* an event that names another seal than its topic (``device_mismatch``): a seal whose configured id was changed
  holds its old identity's signed events, which would be deleted for a quarantine row;
* a signed event that conflicts with the stored chain (``replayed_seq``, ``duplicate_event_id``, ``broken_chain``,
  e.g. a seal whose outbox was lost and that starts again at seq 1): it is the seal's own signed evidence and must
  not leave the seal for a quarantine row;
* a quarantined message whose bytes its quarantine row does not keep: larger than the quarantine keeps
  (:data:`~server.ingest.quarantine_rows.QUARANTINE_RAW_LIMIT`), or refused by the quarantine's byte budget
  (:class:`~server.ingest.quarantine_rows.QuarantineBudget`: anyone with a seal's password can spend its account's
  budget on garbage, and a genuine message refused afterwards would otherwise be lost on both sides).

Only the reasons the bytes alone earn (:data:`RECEIPTED_QUARANTINE`) are receipted: no copy of them can ever be
stored. Statuses and messages on no seal's topic get no receipt.

Naming bytes by their hash makes a receipt safe whoever provoked it: a message forged with a seal's password is
receipted under its own hash, which matches nothing in the seal's outbox. But a receipt does not say the kind, and
a seal deletes whatever it keeps under that hash, event or picture: so quarantined bytes are receipted only if the
seal cannot be keeping them as anything but what their topic says (:func:`_other_kind`) — a seal's event (its bytes
begin with ``{``) published on its snapshot topic, its picture (a JPEG) published on its event topic, or a picture
on a snapshot topic that names another hash would otherwise be deleted by the seal while the court holds only a
quarantine row.
"""

from __future__ import annotations

import hashlib
import logging
import queue
from collections.abc import Iterable, Sequence
from datetime import datetime

import paho.mqtt.client as mqtt

from seal_protocol.errors import InvalidTopic
from seal_protocol.receipts import MAX_RECEIPT_HASHES, encode_receipt
from seal_protocol.signing import SigningKey
from seal_protocol.topics import MessageKind, ParsedTopic, parse_topic, receipt_topic
from server.commands.keys import CourtKey
from server.core.mqtt import publish_problem
from server.errors import CommandsUnavailable
from server.ingest.quarantine_rows import QUARANTINE_RAW_LIMIT
from server.ingest.results import IngestResult, Message, Outcome, Reason

logger = logging.getLogger(__name__)

#: A committed batch's messages and their outcomes, for its receipts.
Committed = tuple[list[Message], list[IngestResult]]
#: Outcomes after which the court may hold the message's exact bytes (a quarantined one: if ``bytes_kept``).
HELD = frozenset({Outcome.STORED, Outcome.DUPLICATE, Outcome.SNAPSHOT, Outcome.QUARANTINED})
#: Quarantine reasons that the bytes alone earn, so that no copy of them can ever be stored: those are receipted if
#: the quarantine keeps the bytes (``bytes_kept``). Every other reason is not, so the seal keeps the message and sends
#: it again: the court's own failure (the row may lack the bytes), a refusal a correction of the court's records can
#: lift (unknown seal, enrolled key, binding), and a signed event that conflicts with the stored chain
#: (``replayed_seq``, ``duplicate_event_id``, ``broken_chain``: the seal's own signed evidence, which must not leave
#: it for a quarantine).
RECEIPTED_QUARANTINE = frozenset(
    {
        Reason.INVALID_TOPIC,
        Reason.UNEXPECTED_KIND,
        Reason.OVERSIZED,
        Reason.INVALID_UTF8,
        Reason.INVALID_JSON,
        Reason.INVALID_ENVELOPE,
        Reason.NON_CANONICAL,
        Reason.SNAPSHOT_MISMATCH,
        Reason.INVALID_SNAPSHOT,
    }
)
RECEIPTED_KINDS = frozenset({MessageKind.EVENT, MessageKind.SNAPSHOT})


def committed_hashes(messages: Sequence[Message], results: Sequence[IngestResult]) -> dict[str, list[str]]:
    """Per device id, the distinct SHA-256s (hex) of its committed event and snapshot messages, in arrival order."""
    by_device: dict[str, dict[str, None]] = {}
    for message, result in zip(messages, results, strict=True):
        if result.outcome not in HELD:
            continue
        if result.outcome is Outcome.QUARANTINED and (
            result.reason not in RECEIPTED_QUARANTINE
            or not result.bytes_kept
            or len(message.payload) > QUARANTINE_RAW_LIMIT
        ):
            continue
        try:
            topic = parse_topic(message.topic)
        except InvalidTopic:
            continue
        if topic.kind not in RECEIPTED_KINDS:
            continue
        if result.outcome is Outcome.QUARANTINED and _other_kind(topic, message.payload):
            continue
        by_device.setdefault(topic.device_id, {})[hashlib.sha256(message.payload).hexdigest()] = None
    return {device_id: list(hashes) for device_id, hashes in by_device.items()}


#: How every event a seal keeps begins (canonical JSON: an object, no space before it), and every picture (a JPEG's
#: start-of-image marker).
EVENT_START = b"{"
JPEG_START = b"\xff\xd8"


def _other_kind(topic: ParsedTopic, payload: bytes) -> bool:
    """Whether a seal may keep ``payload`` as another message than the one ``topic`` says: as an event, if it came as
    a snapshot; as a picture, if it came as an event, or as a snapshot under another hash than the topic's."""
    if topic.kind is MessageKind.EVENT:
        return payload.startswith(JPEG_START)
    if payload.startswith(EVENT_START):
        return True
    return payload.startswith(JPEG_START) and hashlib.sha256(payload).hexdigest() != topic.sha256


def receipts_for(
    messages: Sequence[Message],
    results: Sequence[IngestResult],
    *,
    key: SigningKey,
    now: datetime | None = None,
) -> list[tuple[str, bytes]]:
    """The signed receipts for a committed batch: (receipt topic, payload) pairs, at most
    :data:`~seal_protocol.receipts.MAX_RECEIPT_HASHES` hashes each; publish them at QoS 1, not retained."""
    receipts = []
    for device_id, hashes in committed_hashes(messages, results).items():
        topic = receipt_topic(device_id)
        for start in range(0, len(hashes), MAX_RECEIPT_HASHES):
            chunk = hashes[start : start + MAX_RECEIPT_HASHES]
            receipts.append((topic, encode_receipt(device_id, chunk, key, now=now)))
    return receipts


def take_waiting(
    first: Committed, waiting: queue.Queue[Committed | None]
) -> tuple[list[Message], list[IngestResult], bool]:
    """``first`` and every committed batch already waiting behind it, as one: one receipt per seal for all of them.

    When the receipts keep up, nothing waits and each batch is receipted alone, at once. When they fall behind — a
    reconnect storm, whose batches hold events of hundreds of seals, costs a signed receipt per seal per batch — the
    batches that piled up meanwhile share their receipts, so the work per event falls as the load rises. The third
    value is False if the end (``None``) was among them."""
    messages, results = list(first[0]), list(first[1])
    while True:
        try:
            work = waiting.get_nowait()
        except queue.Empty:
            return messages, results, True
        if work is None:
            return messages, results, False
        messages += work[0]
        results += work[1]


def send_receipts(client: mqtt.Client, receipts: Iterable[tuple[str, bytes]]) -> None:
    """Publish a committed batch's receipts (QoS 1). One that is lost costs the seal a re-send, no more."""
    for topic, payload in receipts:
        info = client.publish(topic, payload, qos=1)
        problem = publish_problem(info)
        if problem is not None and info.rc != mqtt.MQTT_ERR_NO_CONN:  # disconnected: the seal sends again
            logger.warning("receipt on %s not sent: %s", topic, problem)


def receipt_key(court_key: CourtKey | None) -> SigningKey | None:
    """The court's command key, which signs receipts; None without it."""
    if court_key is None:
        return None
    try:
        return court_key.get()
    except CommandsUnavailable:
        return None
