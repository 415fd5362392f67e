"""The ingest core, without a broker: each message becomes one stored event, a no-op, a status or a quarantine row."""

from __future__ import annotations

import gc
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from seal_protocol import EventType, canonical_json, decode_envelope, encode_envelope, encode_status, snapshot_topic
from seal_protocol.signing import generate_signing_key, sign_envelope
from seal_protocol.status import SealStatus
from server.core.db import SessionFactory, make_engine, make_session_factory
from server.core.metrics import IngestMetrics
from server.errors import StorageUnavailable
from server.evidence.models import Event, Snapshot
from server.ingest.ingestor import Ingestor
from server.ingest.models import QuarantinedMessage
from server.ingest.results import Message, Outcome, Reason
from server.seals.models import Seal
from tests.server.helpers import (
    CASE_A,
    CASE_B,
    SimulatedSeal,
    jpeg_bytes,
    message,
    refuse_seq_in_the_database,
    register,
)
from tests.server.ingest_world import make_court


@dataclass
class World:
    session_factory: SessionFactory
    ingestor: Ingestor
    metrics: IngestMetrics
    a: SimulatedSeal
    b: SimulatedSeal

    def events(self) -> list[Event]:
        with self.session_factory() as session:
            return list(session.scalars(select(Event).order_by(Event.id)))

    def quarantine(self) -> list[QuarantinedMessage]:
        with self.session_factory() as session:
            return list(session.scalars(select(QuarantinedMessage).order_by(QuarantinedMessage.id)))

    def seal(self, device_id: str) -> Seal:
        with self.session_factory() as session:
            seal = session.scalar(select(Seal).where(Seal.device_id == device_id))
            assert seal is not None
            return seal


@pytest.fixture
def world(session_factory: SessionFactory, tmp_path: Path) -> World:
    a = SimulatedSeal("seal-a", CASE_A)
    b = SimulatedSeal("seal-b", CASE_B)
    register(session_factory, a, b)
    metrics = IngestMetrics()
    ingestor = Ingestor(session_factory, metrics=metrics, snapshot_dir=tmp_path / "snapshots")
    return World(session_factory, ingestor, metrics, a, b)


def test_valid_event_is_stored_verbatim_in_its_case(world: World) -> None:
    data = world.a.event(EventType.INTRUSION, {"warning": "played", "pir_pin": 17, "note": "有人进入"})

    [result] = world.ingestor.ingest([message(world.a.event_topic, data)])

    assert result.outcome is Outcome.STORED
    [row] = world.events()
    assert (row.device_id, row.case_no, row.seq, row.type) == ("seal-a", CASE_A, 1, "intrusion")
    assert row.raw == data
    assert row.payload == {"warning": "played", "pir_pin": 17, "note": "有人进入"}
    assert json.loads(data)["sig"] == row.sig
    assert row.ts.tzinfo is not None and row.received_at.tzinfo is not None
    assert world.seal("seal-a").last_event_at == row.received_at
    assert world.metrics.snapshot().stored == 1


def test_events_of_two_seals_go_to_their_own_cases(world: World) -> None:
    world.ingestor.ingest(
        [message(world.a.event_topic, world.a.event()), message(world.b.event_topic, world.b.event())]
    )
    assert sorted((row.device_id, row.case_no) for row in world.events()) == [("seal-a", CASE_A), ("seal-b", CASE_B)]


def test_redelivered_event_is_stored_once(world: World) -> None:
    data = world.a.event()

    first = world.ingestor.ingest([message(world.a.event_topic, data), message(world.a.event_topic, data)])
    again = world.ingestor.ingest([message(world.a.event_topic, data)])

    assert [r.outcome for r in first + again] == [Outcome.STORED, Outcome.DUPLICATE, Outcome.DUPLICATE]
    assert len(world.events()) == 1
    assert world.quarantine() == []
    assert world.metrics.snapshot().duplicates == 2


def _forged(w: World) -> tuple[str, bytes]:
    return w.a.event_topic, w.a.event(key=generate_signing_key())


def _unsigned(w: World) -> tuple[str, bytes]:
    obj = json.loads(w.a.event())
    obj["sig"] = None
    return w.a.event_topic, canonical_json(obj)


def _unknown_seal(_w: World) -> tuple[str, bytes]:
    stranger = SimulatedSeal("seal-unknown", CASE_A)
    return stranger.event_topic, stranger.event()


def _other_case(w: World) -> tuple[str, bytes]:
    return w.a.event_topic, w.a.event(case_no=CASE_B)


def _device_mismatch(w: World) -> tuple[str, bytes]:
    return w.b.event_topic, w.a.event()


def _replayed_seq(w: World) -> tuple[str, bytes]:
    w.ingestor.ingest([message(w.a.event_topic, w.a.event())])
    return w.a.event_topic, w.a.event(EventType.TAMPER, seq=1)


def _signed_by_the_seal(w: World, change: Callable[[dict[str, Any]], None], *, raw: bool = False) -> tuple[str, bytes]:
    """A message of seal-a with its fields changed by ``change`` and then validly signed with the seal's own key
    (over the JSON as sent), so that only the strict parsing can refuse it."""
    obj = json.loads(w.a.event())
    del obj["sig"]
    change(obj)
    body = json.dumps(obj, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    signature = w.a.key.sign(body.encode("utf-8", "surrogatepass")).signature.hex()
    obj["sig"] = signature
    text = json.dumps(obj, ensure_ascii=raw, sort_keys=True, separators=(",", ":"))
    return w.a.event_topic, text.encode("utf-8", "surrogatepass")


def _set(name: str, value: Any) -> Callable[[dict[str, Any]], None]:
    return lambda obj: obj.__setitem__(name, value)


def _with_whitespace(w: World) -> tuple[str, bytes]:
    return w.a.event_topic, json.dumps(json.loads(w.a.event()), ensure_ascii=False).encode()


def _duplicate_key(w: World) -> tuple[str, bytes]:
    data = w.a.event()
    return w.a.event_topic, data.replace(b'"seq":', b'"seq":1,"seq":', 1)


BAD_MESSAGES: dict[str, tuple[Callable[[World], tuple[str, bytes]], Reason]] = {
    "lone surrogate, signed": (
        lambda w: _signed_by_the_seal(w, _set("payload", {"note": "\ud800"}), raw=True),
        Reason.INVALID_JSON,
    ),
    "lone low surrogate, signed": (
        lambda w: _signed_by_the_seal(w, _set("payload", {"note": "\udc00"}), raw=True),
        Reason.INVALID_JSON,
    ),
    "seq true, signed": (lambda w: _signed_by_the_seal(w, _set("seq", True)), Reason.INVALID_ENVELOPE),
    "seq as a string, signed": (lambda w: _signed_by_the_seal(w, _set("seq", "15")), Reason.INVALID_ENVELOPE),
    "float in the payload, signed": (
        lambda w: _signed_by_the_seal(w, _set("payload", {"x": 1.5})),
        Reason.INVALID_JSON,
    ),
    "non-ASCII digits in ts, signed": (
        lambda w: _signed_by_the_seal(w, _set("ts", "２０２６-01-01T00:00:00.000Z")),
        Reason.INVALID_ENVELOPE,
    ),
    "impossible date, signed": (
        lambda w: _signed_by_the_seal(w, _set("ts", "2026-02-30T00:00:00.000Z")),
        Reason.INVALID_ENVELOPE,
    ),
    "leap second, signed": (
        lambda w: _signed_by_the_seal(w, _set("ts", "2026-12-31T23:59:60.000Z")),
        Reason.INVALID_ENVELOPE,
    ),
    "extra field, signed": (lambda w: _signed_by_the_seal(w, _set("extra", 1)), Reason.INVALID_ENVELOPE),
    "uppercase event_id, signed": (
        lambda w: _signed_by_the_seal(w, lambda o: o.__setitem__("event_id", o["event_id"].upper())),
        Reason.INVALID_ENVELOPE,
    ),
    "escaped non-ASCII, signed": (lambda w: _signed_by_the_seal(w, lambda o: None, raw=True), Reason.NON_CANONICAL),
    "re-encoded with white space": (_with_whitespace, Reason.NON_CANONICAL),
    "duplicate key": (_duplicate_key, Reason.INVALID_JSON),
    "deeply nested": (lambda w: (w.a.event_topic, b"[" * 30_000 + b"]" * 30_000), Reason.INVALID_JSON),
    "malformed JSON": (lambda w: (w.a.event_topic, b'{"v": 1, "seq": '), Reason.INVALID_JSON),
    "invalid UTF-8": (lambda w: (w.a.event_topic, b'{"v": "\xff\xfe"}'), Reason.INVALID_UTF8),
    "not an envelope": (lambda w: (w.a.event_topic, b'{"v": 1, "seq": 3}'), Reason.INVALID_ENVELOPE),
    "a JSON list": (lambda w: (w.a.event_topic, b"[1, 2]"), Reason.INVALID_ENVELOPE),
    "oversized": (lambda w: (w.a.event_topic, b'{"x": "' + b"a" * 70_000 + b'"}'), Reason.OVERSIZED),
    "forged signature": (_forged, Reason.BAD_SIGNATURE),
    "unsigned": (_unsigned, Reason.BAD_SIGNATURE),
    "unknown seal": (_unknown_seal, Reason.UNKNOWN_SEAL),
    "seal bound to another case": (_other_case, Reason.WRONG_CASE),
    "device id differs from topic": (_device_mismatch, Reason.DEVICE_MISMATCH),
    "replayed seq with other content": (_replayed_seq, Reason.REPLAYED_SEQ),
    "not a seal topic": (lambda w: ("seal/v1/Not-A-Device!/event", w.a.event()), Reason.INVALID_TOPIC),
    "command topic": (lambda w: ("seal/v1/seal-a/cmd", b"{}"), Reason.UNEXPECTED_KIND),
}


@pytest.mark.parametrize("case", list(BAD_MESSAGES))
def test_bad_message_is_quarantined_and_the_next_good_one_stored(world: World, case: str) -> None:
    make_bad, reason = BAD_MESSAGES[case]
    topic, bad = make_bad(world)
    stored_before = len(world.events())
    good = world.b.event(EventType.INTRUSION)

    results = world.ingestor.ingest([message(topic, bad), message(world.b.event_topic, good)])

    assert [r.outcome for r in results] == [Outcome.QUARANTINED, Outcome.STORED]
    assert results[0].reason is reason
    [row] = world.quarantine()
    assert (row.reason, row.topic, row.size) == (reason.value, topic, len(bad))
    assert row.raw == bad[: len(row.raw)] and len(row.raw) == len(bad)
    assert row.detail
    events = world.events()
    assert len(events) == stored_before + 1 and events[-1].raw == good
    assert world.metrics.snapshot().rejected == {reason.value: 1}


def test_a_re_encoded_copy_published_first_does_not_take_the_seals_place(world: World) -> None:
    """Someone with the seal's MQTT password re-publishes its event with other white space before the real one."""
    original, following = world.a.event(), world.a.event()
    copy = json.dumps(json.loads(original), ensure_ascii=False, indent=1).encode()

    results = world.ingestor.ingest([message(world.a.event_topic, data) for data in (copy, original, following)])

    assert [(r.outcome, r.reason) for r in results] == [
        (Outcome.QUARANTINED, Reason.NON_CANONICAL),
        (Outcome.STORED, None),
        (Outcome.STORED, None),
    ]
    assert [row.raw for row in world.events()] == [original, following]


def test_a_duplicate_is_a_no_op_only_when_its_bytes_are_identical(world: World) -> None:
    original = world.a.event()
    again = world.ingestor.ingest([message(world.a.event_topic, original)] * 2)
    other_bytes = json.dumps(json.loads(original), ensure_ascii=True, sort_keys=True, separators=(",", ":")).encode()

    [result] = world.ingestor.ingest([message(world.a.event_topic, other_bytes)])

    assert [r.outcome for r in again] == [Outcome.STORED, Outcome.DUPLICATE]
    assert result.outcome is Outcome.QUARANTINED and other_bytes != original
    assert [row.raw for row in world.events()] == [original]


def test_quarantine_keeps_the_device_of_a_parsable_topic(world: World) -> None:
    world.ingestor.ingest([message(world.a.event_topic, b"garbage")])
    [row] = world.quarantine()
    assert row.device_id == "seal-a"


def test_long_topics_that_begin_alike_keep_a_quarantine_row_each_naming_its_own(world: World) -> None:
    """A seal's account may publish any last level under its snapshot topic, up to 64 KiB. Two such topics that share
    the stored topic's first 512 characters were counted as two copies of one row, and the second was kept nowhere:
    each has its row, which names its topic by its start, its length and the SHA-256 of the whole."""
    stem = snapshot_topic("seal-a", "f" * 64) + "f" * 600
    first, second = stem + "-first", stem + "-second"
    world.ingestor.ingest([message(topic, b"\xff\xd8same") for topic in (first, second, first)])
    rows = sorted(world.quarantine(), key=lambda row: row.copies)
    assert [(row.reason, row.copies) for row in rows] == [("invalid_topic", 1), ("invalid_topic", 2)]
    for row, topic in zip(rows, (second, first), strict=True):
        assert len(row.topic) <= 512 and row.topic.startswith(stem[:300])
        assert row.topic.endswith(f"({len(topic)} characters, sha256 {hashlib.sha256(topic.encode()).hexdigest()})")


def test_status_updates_the_seal(world: World) -> None:
    results = world.ingestor.ingest([message(world.a.status_topic, encode_status(SealStatus.ONLINE))])
    assert results[0].outcome is Outcome.STATUS
    seal = world.seal("seal-a")
    assert seal.status == "online" and seal.status_changed_at is not None
    assert seal.last_seen_at is None, "a status is not signed: no sign of life"

    world.ingestor.ingest([message(world.a.status_topic, encode_status(SealStatus.OFFLINE))])
    seal = world.seal("seal-a")
    assert seal.status == "offline"
    assert world.metrics.snapshot().status_updates == 2


def test_bad_or_unknown_status_is_quarantined(world: World) -> None:
    stranger = SimulatedSeal("seal-x", CASE_A)
    results = world.ingestor.ingest(
        [
            message(world.a.status_topic, b"online"),
            message(stranger.status_topic, encode_status(SealStatus.ONLINE)),
            message(world.a.status_topic, b""),  # a retained status being cleared
        ]
    )
    assert [(r.outcome, r.reason) for r in results] == [
        (Outcome.QUARANTINED, Reason.INVALID_STATUS),
        (Outcome.QUARANTINED, Reason.UNKNOWN_SEAL),
        (Outcome.IGNORED, None),
    ]
    assert world.seal("seal-a").status is None
    assert world.metrics.snapshot().ignored == 1, "an ignored message is counted, not silently dropped"


def test_snapshot_is_stored_by_its_hash(world: World, tmp_path: Path) -> None:
    jpeg = jpeg_bytes()
    digest = hashlib.sha256(jpeg).hexdigest()

    results = world.ingestor.ingest(
        [
            message(snapshot_topic("seal-a", digest), jpeg),
            message(snapshot_topic("seal-a", digest), jpeg),
            message(snapshot_topic("seal-a", "0" * 64), jpeg),
        ]
    )

    assert [r.outcome for r in results] == [Outcome.SNAPSHOT, Outcome.DUPLICATE, Outcome.QUARANTINED]
    assert results[2].reason is Reason.SNAPSHOT_MISMATCH
    assert (tmp_path / "snapshots" / f"{digest}.jpg").read_bytes() == jpeg
    with world.session_factory() as session:
        row = session.scalar(select(Snapshot))
        assert row is not None and (row.device_id, row.case_no, row.size) == ("seal-a", CASE_A, len(jpeg))


def test_snapshot_with_a_thumbnail_in_its_metadata_is_stored(world: World, tmp_path: Path) -> None:
    """An EXIF thumbnail is a JPEG of its own, scan header included, inside the picture's metadata (APP1): only the
    scans from the picture's first on are counted against its colour components."""
    import cv2
    import numpy as np

    thumbnail = jpeg_bytes(8, 6)
    app1 = b"Exif\0\0" + thumbnail
    ok, encoded = cv2.imencode(".jpg", np.full((24, 32), 128, dtype=np.uint8))  # grey: one component, one scan
    picture = encoded.tobytes()
    with_thumbnail = picture[:2] + b"\xff\xe1" + (len(app1) + 2).to_bytes(2, "big") + app1 + picture[2:]
    digest = hashlib.sha256(with_thumbnail).hexdigest()

    [result] = world.ingestor.ingest([message(snapshot_topic("seal-a", digest), with_thumbnail)])

    assert (result.outcome, result.reason) == (Outcome.SNAPSHOT, None)
    assert (tmp_path / "snapshots" / f"{digest}.jpg").read_bytes() == with_thumbnail


def _wrapped(body: bytes, *, width: int = 1, height: int = 1) -> bytes:
    """A JPEG's start, a frame header of ``width`` x ``height`` and a scan header around ``body``, then its end."""
    size = height.to_bytes(2, "big") + width.to_bytes(2, "big")
    frame = b"\xff\xc0" + (11).to_bytes(2, "big") + b"\x08" + size + b"\x01\x01\x11\x00"
    scan = b"\xff\xda" + (8).to_bytes(2, "big") + b"\x01\x01\x00\x00\x3f\x00"
    return b"\xff\xd8" + frame + scan + body + b"\xff\xd9"


@pytest.mark.parametrize(
    "picture",
    [
        b"",
        b"GIF89a" + b"\0" * 64,
        b"\xff\xd8\xff\xe0" + bytes(range(256)) * 4,  # a JPEG's first bytes and then noise
        jpeg_bytes()[:-40] + b"\xff\xd9",  # a cut JPEG with an end marker glued on
        _wrapped(b"this is an arbitrary file, not a picture " * 1000),  # a frame header and a scan around text
        _wrapped(b"A" * 600_000, width=640, height=480),  # plausible size, no tables: does not decode
        jpeg_bytes()[:-2] + b"arbitrary bytes " * 6000 + b"\xff\xd9",  # a real picture with a file glued in
        b"\xff\xd8" + (b"\xff\xfe\xff\xff" + b"c" * 65533) * 2 + jpeg_bytes()[2:],  # 128 KiB in comments
    ],
    ids=["empty", "gif", "jpeg-start-only", "truncated", "text-in-a-scan", "no-tables", "appended", "comments"],
)
def test_snapshot_that_is_not_a_jpeg_is_quarantined(world: World, tmp_path: Path, picture: bytes) -> None:
    digest = hashlib.sha256(picture).hexdigest()
    good = world.b.event()

    results = world.ingestor.ingest(
        [message(snapshot_topic("seal-a", digest), picture), message(world.b.event_topic, good)]
    )

    assert [(r.outcome, r.reason) for r in results] == [
        (Outcome.QUARANTINED, Reason.INVALID_SNAPSHOT),
        (Outcome.STORED, None),
    ]
    assert not (tmp_path / "snapshots" / f"{digest}.jpg").exists()
    with world.session_factory() as session:
        assert session.scalar(select(func.count(Snapshot.id))) == 0


def test_nul_character_is_refused_by_the_protocol_on_every_database(world: World) -> None:
    """PostgreSQL's JSONB cannot hold U+0000, SQLite can: the wire contract refuses it, so both agree."""
    obj = json.loads(world.a.event())
    obj["payload"] = {"text": "nul\u0000byte"}
    del obj["sig"]
    obj["sig"] = world.a.key.sign(canonical_json(obj)).signature.hex()  # validly signed by the seal itself
    awkward = canonical_json(obj)
    good = world.b.event()

    results = world.ingestor.ingest([message(world.a.event_topic, awkward), message(world.b.event_topic, good)])

    assert [(r.outcome, r.reason) for r in results] == [
        (Outcome.QUARANTINED, Reason.INVALID_JSON),
        (Outcome.STORED, None),
    ]
    assert [row.raw for row in world.events()] == [good]


def test_row_the_database_refuses_is_quarantined_alone(world: World, database_url: str) -> None:
    """One message's row fails in the database: the batch is stored one by one, and only that one is quarantined."""
    refuse_seq_in_the_database(world.session_factory, database_url, seq=2)
    first, refused, third = world.a.event(), world.a.event(), world.a.event()
    other = world.b.event()

    results = world.ingestor.ingest(
        [message(world.a.event_topic, data) for data in (first, refused, third)] + [message(world.b.event_topic, other)]
    )

    assert [(r.outcome, r.reason) for r in results] == [
        (Outcome.STORED, None),
        (Outcome.QUARANTINED, Reason.STORAGE_ERROR),
        (Outcome.STORED, None),
        (Outcome.STORED, None),
    ]
    [row] = world.quarantine()
    assert row.raw == refused and "refused by the test" in row.detail
    assert sorted(row.raw for row in world.events()) == sorted([first, third, other])
    assert world.metrics.snapshot().rejected == {"storage_error": 1}


def test_without_a_database_nothing_is_claimed_stored(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'no-tables.db'}")  # tables never created
    try:
        metrics = IngestMetrics()
        ingestor = Ingestor(make_session_factory(engine), metrics=metrics, snapshot_dir=tmp_path / "snap")
        seal = SimulatedSeal("seal-a", CASE_A)
        with pytest.raises(StorageUnavailable):
            ingestor.ingest([message(seal.event_topic, seal.event())])
        assert metrics.snapshot().stored == 0
        with engine.connect() as conn:
            tables = conn.exec_driver_sql("SELECT count(*) FROM sqlite_master WHERE type = 'table'").scalar()
        assert tables == 0
    finally:
        engine.dispose()


def test_many_events_in_one_batch(world: World) -> None:
    data = [world.a.event() for _ in range(300)]
    results = world.ingestor.ingest([message(world.a.event_topic, d) for d in data])
    assert all(r.outcome is Outcome.STORED for r in results)
    with world.session_factory() as session:
        assert session.scalar(select(func.count(Event.id))) == 300
        assert session.scalar(select(func.max(Event.seq))) == 300


def test_clashes_inside_one_batch_are_caught_like_across_batches(world: World) -> None:
    first = world.a.event()
    replay = world.a.event(EventType.TAMPER, seq=1)
    same_id = decode_envelope(first).model_copy(update={"seq": 2, "sig": None})
    same_id_bytes = encode_envelope(sign_envelope(same_id, world.a.key))

    results = world.ingestor.ingest([message(world.a.event_topic, d) for d in (first, replay, same_id_bytes)])
    again = world.ingestor.ingest([message(world.a.event_topic, same_id_bytes)])

    assert [(r.outcome, r.reason) for r in results + again] == [
        (Outcome.STORED, None),
        (Outcome.QUARANTINED, Reason.REPLAYED_SEQ),
        (Outcome.QUARANTINED, Reason.DUPLICATE_EVENT_ID),
        (Outcome.QUARANTINED, Reason.DUPLICATE_EVENT_ID),
    ]
    assert [row.raw for row in world.events()] == [first]


def test_snapshot_store_refuses_a_name_that_is_not_a_hash(tmp_path: Path) -> None:
    from server.evidence.snapshot_files import SnapshotStore

    store = SnapshotStore(tmp_path)
    with pytest.raises(ValueError, match="SHA-256"):
        store.name_for("../../etc/passwd")
    data = b"\xff\xd8jpeg"
    sha = hashlib.sha256(data).hexdigest()
    store.put(sha, data)
    assert (tmp_path / f"{sha}.jpg").read_bytes() == data == store.read(sha)
    with pytest.raises(ValueError, match="do not match"):
        store.put(sha, b"other")


def test_a_file_under_a_picture_s_name_with_other_bytes_is_an_error_not_the_picture(tmp_path: Path) -> None:
    """As in a bucket: a file already there is read back, and other bytes (of any size) are refused and counted,
    never taken for the picture nor silently replaced."""
    from server.errors import ContentMismatch
    from server.evidence.snapshot_files import SnapshotStore

    metrics = IngestMetrics()
    store = SnapshotStore(tmp_path, on_mismatch=metrics.count_content_mismatch)
    data = b"\xff\xd8jpeg"
    sha = hashlib.sha256(data).hexdigest()
    for other in (b"\xff\xd8JPEG", b"longer bytes"):  # the same size, another size
        (tmp_path / f"{sha}.jpg").write_bytes(other)
        with pytest.raises(ContentMismatch):
            store.put(sha, data)
        with pytest.raises(ContentMismatch):
            store.read(sha)
        assert (tmp_path / f"{sha}.jpg").read_bytes() == other and store.hash_of(sha) != sha
    assert metrics.content_mismatches() == {"snapshot": 6}


def test_copies_of_a_refused_message_count_on_one_row(world: World) -> None:
    """A seal keeps what the court did not receipt and sends it again: each copy is counted, on one row."""
    stranger = SimulatedSeal("seal-unknown", CASE_A)
    data = stranger.event()
    first = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)

    world.ingestor.ingest([message(stranger.event_topic, data), message(stranger.event_topic, data)])
    world.ingestor.ingest([Message(stranger.event_topic, data, first + timedelta(hours=1))])
    world.ingestor.ingest([message(world.a.event_topic, b"garbage"), message(world.b.event_topic, b"garbage")])

    rows = world.quarantine()
    assert [(r.reason, r.copies, r.device_id) for r in rows] == [
        ("unknown_seal", 3, "seal-unknown"),
        ("invalid_json", 1, "seal-a"),
        ("invalid_json", 1, "seal-b"),
    ]
    assert rows[0].sha256 == hashlib.sha256(data).hexdigest() and rows[0].last_received_at is not None
    assert world.metrics.snapshot().rejected == {"unknown_seal": 3, "invalid_json": 2}


def garbage_cycles(send: Callable[[], object]) -> tuple[int, list[str]]:
    """How many objects ``send()`` left in reference cycles (found by a collection), and their types."""
    gc.collect()
    gc.disable()
    try:
        send()
        gc.set_debug(gc.DEBUG_SAVEALL)
        cycles = gc.collect()
        found = sorted({type(o).__qualname__ for o in gc.garbage})
        gc.garbage.clear()
    finally:
        gc.set_debug(0)
        gc.enable()
    return cycles, found


def fewest_cycles(sends: list[Callable[[], object]]) -> tuple[int, list[str]]:
    """:func:`garbage_cycles` of each of ``sends`` in turn, until one leaves none: the fewest found. Another thread of
    this process (one an earlier test left running) may let go of a structure of its own while a batch runs, and the
    collection then finds it; a batch's own cycles come back with every batch."""
    fewest = garbage_cycles(sends[0])
    for send in sends[1:]:
        if fewest[0] == 0:
            break
        fewest = min(fewest, garbage_cycles(send))
    return fewest


def test_a_batch_leaves_no_garbage_cycles(session_factory: SessionFactory, tmp_path: Path) -> None:
    """Everything a batch allocates is freed by reference counting when it ends: left as cycles (the batch and every
    row it held, about 24 objects per event), it was found by the garbage collector's full collections, which then
    held the interpreter for 100-200 ms at a time under load (bench/ingest.py)."""
    court = make_court(session_factory, tmp_path)
    court.send(court.a, court.a.event(EventType.HEARTBEAT, {"armed": True}))  # first use: caches fill
    court.send(court.b, court.b.event(EventType.INTRUSION, {"pir": True}))
    court.send(court.b, court.b.event(EventType.INTRUSION, {"pir": True}))  # the live alarm's first load
    heartbeats = [[court.a.event(EventType.HEARTBEAT, {"armed": True}) for _ in range(20)] for _ in range(3)]
    assert fewest_cycles([lambda batch=batch: court.send(court.a, *batch) for batch in heartbeats]) == (0, [])
    # a batch that raises an alarm (or folds into it): none either (the ORM's query of the live alarms, once built
    # per batch, left its parameters in a cycle of 20 objects)
    alarming = [[court.b.event(EventType.INTRUSION, {"pir": True}), *(court.b.event() for _ in range(20))]]
    alarming += [[court.b.event(EventType.INTRUSION, {"pir": True}), *(court.b.event() for _ in range(20))]]
    assert fewest_cycles([lambda batch=batch: court.send(court.b, *batch) for batch in alarming]) == (0, [])
    assert len(court.alarms("intrusion")) == 1  # the batches did raise the alarm (their closures ran)


def test_a_batch_with_refusals_leaves_no_garbage_cycles(session_factory: SessionFactory, tmp_path: Path) -> None:
    """A refusal kept as a value (decided before the transaction, by the seal's row, or by its case) and raised again
    when its turn came carried a traceback whose frames named the batch, which held the refusal: the whole batch
    (its session, every row) was left in a cycle again, batch after batch, while a seal sent such messages."""
    court = make_court(session_factory, tmp_path)
    court.send(court.a, court.a.event(EventType.HEARTBEAT, {"armed": True}))  # first use: caches fill
    court.send(court.a, b"not json")

    def batch(n: int) -> Callable[[], object]:
        heartbeats = [court.a.event(EventType.HEARTBEAT, {"armed": True}) for _ in range(20)]
        refused = [
            b"not json %d" % n,  # refused before the transaction
            court.a.event(seq=1000 + 2 * n, key=generate_signing_key()),  # by the seal's row: bad signature
            court.a.event(seq=1001 + 2 * n, case_no=CASE_B),  # by the seal's case: wrong case (its alarm raised)
        ]
        return lambda: court.send(court.a, *heartbeats[:10], *refused, *heartbeats[10:])

    # the first wrong case opens the seal's case_mismatch alarm (statements compiled for the first time), the next fold
    assert fewest_cycles([batch(n) for n in range(3)]) == (0, [])
    reasons = [q.reason for q in court.quarantine()]
    assert reasons.count("bad_signature") >= 1 and reasons.count("wrong_case") >= 1, reasons
    assert court.seqs(court.a.device_id)[:21] == list(range(1, 22))
