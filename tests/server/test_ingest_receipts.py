"""Receipts after a real ingest: exactly the hashes of what the court committed, per seal, signed by its key."""

from __future__ import annotations

import hashlib
import json
import queue
from datetime import UTC, datetime
from pathlib import Path

from seal_protocol.receipts import MAX_RECEIPT_HASHES, check_receipt
from seal_protocol.signing import generate_signing_key
from seal_protocol.topics import receipt_topic, snapshot_topic, status_topic
from server.core.db import SessionFactory
from server.ingest.quarantine_rows import QUARANTINE_RAW_LIMIT
from server.ingest.receipts import Committed, committed_hashes, receipts_for, take_waiting
from server.ingest.results import IngestResult, Message, Outcome, Reason
from tests.server.helpers import jpeg_bytes
from tests.server.ingest_world import make_court

COURT_KEY = generate_signing_key()
NOW = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_stored_duplicate_snapshot_and_quarantined_messages_are_receipted_to_their_own_seal(
    session_factory: SessionFactory, tmp_path: Path
) -> None:
    court = make_court(session_factory, tmp_path)
    a1, a2, b1 = court.a.event(), court.a.event(), court.b.event()
    forged = court.a.event(key=generate_signing_key())  # a message from seal-a's account the court quarantines
    respaced = json.dumps(json.loads(court.a.event()), indent=1).encode()  # bytes that can never be stored
    jpeg = jpeg_bytes()
    status = b'{"agent_version":"1","state":"online","ts":"2026-11-26T08:00:00.000Z"}'
    messages = [
        Message(court.a.event_topic, a1, NOW),
        Message(court.a.event_topic, a1, NOW),  # identical duplicate
        Message(court.a.event_topic, a2, NOW),
        Message(court.b.event_topic, b1, NOW),
        Message(court.a.event_topic, forged, NOW),
        Message(court.a.event_topic, respaced, NOW),
        Message(snapshot_topic("seal-b", sha(jpeg)), jpeg, NOW),
        Message(status_topic("seal-a"), status, NOW),
        Message("not/a/seal/topic", b"x", NOW),
    ]
    results = court.ingestor.ingest(messages)
    outcomes = [r.outcome for r in results]
    assert outcomes[:7] == [Outcome.STORED, Outcome.DUPLICATE, Outcome.STORED, Outcome.STORED, Outcome.QUARANTINED,
                            Outcome.QUARANTINED, Outcome.SNAPSHOT]  # fmt: skip

    receipts = receipts_for(messages, results, key=COURT_KEY, now=NOW)

    assert [topic for topic, _ in receipts] == [receipt_topic("seal-a"), receipt_topic("seal-b")]
    by_device = {
        topic.split("/")[2]: check_receipt(data, device_id=topic.split("/")[2], court_key=COURT_KEY.verify_key)
        for topic, data in receipts
    }
    # The forged one is refused for what the court knows of seal-a (its key): the seal would have to keep it.
    assert by_device["seal-a"].committed == {sha(a1), sha(a2), sha(respaced)}
    assert by_device["seal-b"].committed == {sha(b1), sha(jpeg)}
    assert json.loads(receipts[0][1])["committed"] == [sha(a1), sha(a2), sha(respaced)]  # arrival order, distinct


def test_bytes_a_seal_may_keep_as_something_else_are_not_receipted_when_quarantined(
    session_factory: SessionFactory, tmp_path: Path
) -> None:
    """A receipt names bytes, not a kind, and a seal deletes whatever it keeps under that hash. So the seal's genuine
    event published (by its account) on its snapshot topic, its picture on its event topic, or a picture on a
    snapshot topic naming another hash — each quarantined, none stored — must not be receipted: the seal would
    delete the evidence the court only holds as a quarantine row. Nor an event naming another seal than its topic
    (a seal whose configured id changed sends its old identity's events). Garbage of either kind still is."""
    court = make_court(session_factory, tmp_path)
    event, picture, other = court.a.event(), jpeg_bytes(), jpeg_bytes(shade=200)
    not_a_picture, not_an_event = b"GIF89a not a picture", b"\x00\x01 not an event"
    renamed = court.b.event()  # seal-b's signed event sent on seal-a's topic: a seal whose configured id changed
    messages = [
        Message(court.a.event_topic, renamed, NOW),  # device_mismatch: the seal keeps its old identity's evidence
        Message(snapshot_topic("seal-a", sha(event)), event, NOW),  # invalid_snapshot: the bytes are the seal's event
        Message(court.a.event_topic, picture, NOW),  # invalid_utf8: the bytes are a picture the seal may keep
        Message(snapshot_topic("seal-a", sha(other)), picture, NOW),  # snapshot_mismatch: a picture under another hash
        Message(snapshot_topic("seal-a", sha(not_a_picture)), not_a_picture, NOW),
        Message(court.a.event_topic, not_an_event, NOW),
    ]
    results = court.ingestor.ingest(messages)
    assert [(r.outcome, r.reason) for r in results] == [
        (Outcome.QUARANTINED, Reason.DEVICE_MISMATCH),
        (Outcome.QUARANTINED, Reason.INVALID_SNAPSHOT),
        (Outcome.QUARANTINED, Reason.INVALID_UTF8),
        (Outcome.QUARANTINED, Reason.SNAPSHOT_MISMATCH),
        (Outcome.QUARANTINED, Reason.INVALID_SNAPSHOT),
        (Outcome.QUARANTINED, Reason.INVALID_JSON),
    ]
    assert court.seqs("seal-a") == [] and len(court.quarantine()) == 6

    assert committed_hashes(messages, results) == {"seal-a": [sha(not_a_picture), sha(not_an_event)]}


def test_nothing_committed_nothing_receipted_and_large_batches_are_split() -> None:
    topic = "seal/v1/seal-a/event"
    ignored = [Message(topic, b"x", NOW)]
    assert receipts_for(ignored, [IngestResult(Outcome.IGNORED, "seal-a")], key=COURT_KEY) == []
    # A quarantine row keeps only the first QUARANTINE_RAW_LIMIT bytes: such a message is not held, so not receipted.
    huge = [Message(topic, b"x" * (QUARANTINE_RAW_LIMIT + 1), NOW)]
    assert (
        committed_hashes(huge, [IngestResult(Outcome.QUARANTINED, "seal-a", Reason.NON_CANONICAL, bytes_kept=True)])
        == {}
    )
    # The court's own failure (its row may lack the bytes), or a refusal a clerk's correction can lift: the seal
    # should try again; and a signed event that conflicts with the stored chain is the seal's evidence to keep.
    for reason in (Reason.STORAGE_ERROR, Reason.INTERNAL_ERROR, Reason.UNKNOWN_SEAL, Reason.BAD_SIGNATURE,
                   Reason.UNBOUND_SEAL, Reason.WRONG_CASE, Reason.REPLAYED_SEQ, Reason.DUPLICATE_EVENT_ID,
                   Reason.BROKEN_CHAIN):  # fmt: skip
        assert committed_hashes(ignored, [IngestResult(Outcome.QUARANTINED, "seal-a", reason, bytes_kept=True)]) == {}
    kept = IngestResult(Outcome.QUARANTINED, "seal-a", Reason.INVALID_JSON, bytes_kept=True)
    assert committed_hashes(ignored, [kept]) == {"seal-a": [sha(b"x")]}
    # Bytes the quarantine did not keep (its budget refused them) are not receipted, whatever the reason.
    assert committed_hashes(ignored, [IngestResult(Outcome.QUARANTINED, "seal-a", Reason.INVALID_JSON)]) == {}

    many = [Message(topic, str(i).encode(), NOW) for i in range(MAX_RECEIPT_HASHES + 5)]
    receipts = receipts_for(many, [IngestResult(Outcome.STORED, "seal-a")] * len(many), key=COURT_KEY)
    sizes = [len(check_receipt(d, device_id="seal-a", court_key=COURT_KEY.verify_key).committed) for _, d in receipts]
    assert sizes == [MAX_RECEIPT_HASHES, 5]


def test_batches_waiting_for_their_receipts_share_one_per_seal() -> None:
    """A reconnect storm's batches each hold events of hundreds of seals: when their receipts fall behind, the
    batches waiting are receipted together (one signed receipt per seal), and the end of the queue is kept."""

    def batch(*pairs: tuple[str, bytes]) -> Committed:
        messages = [Message(f"seal/v1/{device}/event", data, NOW) for device, data in pairs]
        return messages, [IngestResult(Outcome.STORED, device) for device, _ in pairs]

    waiting: queue.Queue[Committed | None] = queue.Queue()
    first = batch(("seal-a", b"a1"), ("seal-b", b"b1"))
    waiting.put(batch(("seal-a", b"a2"), ("seal-c", b"c1")))
    waiting.put(batch(("seal-b", b"b2"), ("seal-a", b"a1")))  # a redelivery of a1: receipted once
    messages, results, more = take_waiting(first, waiting)
    assert more and waiting.empty()
    receipts = receipts_for(messages, results, key=COURT_KEY)
    assert sorted(topic for topic, _ in receipts) == [receipt_topic(d) for d in ("seal-a", "seal-b", "seal-c")]
    committed = {topic: json.loads(data)["committed"] for topic, data in receipts}
    assert committed[receipt_topic("seal-a")] == [sha(b"a1"), sha(b"a2")]
    assert committed[receipt_topic("seal-b")] == [sha(b"b1"), sha(b"b2")]

    waiting.put(batch(("seal-c", b"c2")))
    waiting.put(None)  # stopping: what was committed before is still receipted, and nothing after is waited for
    waiting.put(batch(("seal-c", b"c3")))
    messages, _, more = take_waiting(batch(("seal-a", b"a3")), waiting)
    assert not more and [m.payload for m in messages] == [b"a3", b"c2"]
    assert take_waiting(batch(("seal-a", b"a4")), queue.Queue())[2]  # nothing waiting: the batch alone, at once
