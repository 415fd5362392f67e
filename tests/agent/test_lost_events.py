"""An event the outbox can never take costs that event only, and the court learns of it.

The outbox is real (SQLite) and so are its refusals: ``SQLITE_TOOBIG`` from a lowered ``SQLITE_LIMIT_LENGTH``,
``SQLITE_FULL`` from a database filled to its size (:class:`~tests.agent.full_disk.FullDisk`), a trigger's
``RAISE`` (``SQLITE_CONSTRAINT_TRIGGER``) for a refusal of one event alone or of the database's own. A passing
condition (a full disk) keeps the event and tries it again in order; a refusal of the event's own replaces it, at
its place in the chain, by a signed ``event_lost``; a refusal that meets that small event too is the database's, and
keeps the event like a full disk.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from gpiozero.pins.mock import MockFactory

from seal_agent.behaviour.seal import SystemClock
from seal_agent.errors import EventLost, EventRefused, OutboxError
from seal_agent.journal.outbox import Outbox, _append_error
from seal_agent.journal.recorder import EventRecorder
from seal_dev.broker import PrivateBroker
from seal_protocol import Envelope, EventType, decode_envelope, envelope_hash, parse_ts
from seal_protocol.signing import SigningKey, verify_envelope
from seal_protocol.status import StorageFault, StorageReport
from tests.agent.full_disk import FullDisk
from tests.agent.helpers import (
    CourtSubscriber,
    RecordingSpeaker,
    RuntimeFactory,
    check_chain,
    pulse,
    verify_key,
    write_config,
)
from tests.agent.test_camera_agent import camera_section
from tests.agent_camera.clips import black_frames, write_clip

CASE_NO = "(2021)苏0214执1234号"
DEVICE = "seal-test-1"
#: A thinning that names 30 snapshots: an ``outbox_full`` of about 2.6 kB, over the limit the tests set.
THINNING = {
    "quota_bytes": 1_000_000,
    "stored_bytes": 1_200_000,
    "thinned": 30,
    "thinned_unsent": 0,
    "snapshots": [f"{n:064x}" for n in range(30)],
    "unsent_lost": [],
    "part": 1,
    "parts": 1,
}
#: Longer than an event_lost or a heartbeat, shorter than :data:`THINNING`'s event.
VALUE_LIMIT = 1500
KEY = SigningKey.generate()


@pytest.fixture
def outbox(tmp_path: Path) -> Iterator[Outbox]:
    with Outbox(tmp_path / "outbox.sqlite") as box:
        yield box


@pytest.fixture
def recorder(outbox: Outbox) -> EventRecorder:
    return EventRecorder(device_id="seal-test-1", case_no=CASE_NO, signing_key=KEY, outbox=outbox, clock=SystemClock())


def committed(outbox: Outbox) -> list[Envelope]:
    """Every event in the outbox, checked: signed by the seal, each ``prev_hash`` the hash of the one before."""
    stored = outbox.pending(limit=1000)
    envelopes = [decode_envelope(event.data) for event in stored]
    for envelope in envelopes:
        verify_envelope(envelope, KEY.verify_key)
    for before, after in zip(stored, envelopes[1:], strict=False):
        if after.seq == before.seq + 1:  # not across the events a FullDisk filled the disk with (receipted)
            assert after.prev_hash == envelope_hash(before.data)
    return envelopes


def test_a_held_event_the_outbox_then_refuses_for_its_own_reason_gives_way_to_its_event_lost(
    outbox: Outbox, recorder: EventRecorder, caplog: pytest.LogCaptureFixture
) -> None:
    """The review's case: an event held through a full disk that the outbox, once there is room, refuses for a reason
    of its own (``SQLITE_TOOBIG``) no longer blocks every later event, heartbeats included."""
    recorder.record(EventType.HEARTBEAT, {"uptime_s": 1})
    disk = FullDisk(recorder)
    disk.fill()
    before = datetime.now(UTC).replace(microsecond=0)  # a ts has milliseconds
    recorder.record_or_hold(EventType.OUTBOX_FULL, THINNING)  # the spool's thread: it must not wait
    assert recorder.held == 1
    with pytest.raises(OutboxError):
        recorder.record(EventType.HEARTBEAT, {"uptime_s": 2})  # still full: the held event first, so none
    disk.make_room()
    outbox.lower_limits(value_bytes=VALUE_LIMIT)

    stored = recorder.record(EventType.HEARTBEAT, {"uptime_s": 3})

    assert recorder.held == 0
    events = committed(outbox)
    assert [e.type for e in events] == [EventType.HEARTBEAT, EventType.EVENT_LOST, EventType.HEARTBEAT]
    assert events[-1].seq == stored.seq and events[-1].payload == {"uptime_s": 3}
    lost = events[1].payload
    assert lost["lost_type"] == "outbox_full" and lost["reason"] == "outbox_refused"
    assert lost["detail"].startswith("SQLITE_TOOBIG: ")
    assert before <= parse_ts(lost["lost_ts"]) <= parse_ts(events[1].ts)  # when it happened, then when it was lost
    [said] = [r.getMessage() for r in caplog.records if "can never be recorded" in r.getMessage()]
    assert THINNING["snapshots"][-1] in said  # the log is the lost payload's only record: whole, not cut at 2,000


def test_an_event_too_big_for_the_outbox_is_replaced_and_the_caller_told(
    outbox: Outbox, recorder: EventRecorder
) -> None:
    outbox.lower_limits(value_bytes=VALUE_LIMIT)
    with pytest.raises(EventLost) as lost:
        recorder.record(EventType.OUTBOX_FULL, THINNING, settings={"armed": "0"})
    assert outbox.setting("armed") is None  # the settings went with the event: not committed
    recorder.record_or_hold(EventType.OUTBOX_FULL, THINNING)  # the threads that must not wait: no raise, none held
    assert recorder.held == 0
    recorder.record(EventType.HEARTBEAT, {})

    events = committed(outbox)
    assert [e.type for e in events] == [EventType.EVENT_LOST, EventType.EVENT_LOST, EventType.HEARTBEAT]
    assert lost.value.seq == events[0].seq == 1


@pytest.mark.parametrize(
    ("code", "kept"),
    [
        (sqlite3.SQLITE_IOERR_WRITE, True),  # extended codes: their primary code decides
        (sqlite3.SQLITE_BUSY_SNAPSHOT, True),
        (sqlite3.SQLITE_FULL, True),
        (sqlite3.SQLITE_CONSTRAINT_UNIQUE, False),
        (sqlite3.SQLITE_TOOBIG, False),
    ],
    ids=["ioerr-write", "busy-snapshot", "full", "constraint-unique", "toobig"],
)
def test_an_extended_sqlite_code_is_classified_by_its_primary_code(code: int, kept: bool, tmp_path: Path) -> None:
    """SQLite reports extended result codes (``SQLITE_IOERR_WRITE`` is 778): what is a passing condition is decided
    by the primary code in their low byte."""
    error = sqlite3.OperationalError("as SQLite said it")
    error.sqlite_errorcode = code
    error.sqlite_errorname = f"code {code}"

    classified = _append_error(error, tmp_path / "outbox.sqlite")

    assert isinstance(classified, OutboxError if kept else EventRefused)


def test_a_lost_answer_to_a_command_names_the_command(outbox: Outbox, recorder: EventRecorder) -> None:
    """The court ties an answer to its command by ``command_id``: an ``event_lost`` standing for a lost
    ``command_ack`` says which command the seal answered (and carried out), so the judge can tell."""
    outbox.lower_limits(value_bytes=VALUE_LIMIT)
    answer = {"command_id": 7, "action": "disarm", "result": "disarmed", "note": "x" * VALUE_LIMIT}
    with pytest.raises(EventLost):
        recorder.record(EventType.COMMAND_ACK, answer)

    [event] = committed(outbox)
    assert event.type is EventType.EVENT_LOST
    assert (event.payload["lost_type"], event.payload["command_id"], event.payload["action"]) == (
        "command_ack",
        7,
        "disarm",
    )


@pytest.mark.parametrize(
    ("payload", "reason", "detail"),
    [
        ({"note": "x" * 70_000}, "oversized", "oversized: "),  # past the envelope's 64 KiB
        ({"ratio": 0.5}, "invalid_payload", "invalid JSON: float values are not admitted"),
    ],
)
def test_an_event_that_cannot_be_built_is_replaced_at_once(
    outbox: Outbox, recorder: EventRecorder, payload: dict[str, object], reason: str, detail: str
) -> None:
    recorder.record_or_hold(EventType.CAMERA_LOST, payload)
    with pytest.raises(EventLost):
        recorder.record(EventType.INTRUSION, payload)
    recorder.record(EventType.HEARTBEAT, {})

    events = committed(outbox)
    assert [e.type for e in events] == [EventType.EVENT_LOST, EventType.EVENT_LOST, EventType.HEARTBEAT]
    assert [e.payload["lost_type"] for e in events[:2]] == ["camera_lost", "intrusion"]
    assert {e.payload["reason"] for e in events[:2]} == {reason}
    assert detail in events[0].payload["detail"]


def test_a_full_disk_keeps_the_events_in_memory_and_in_order_and_loses_none(
    outbox: Outbox, recorder: EventRecorder
) -> None:
    disk = FullDisk(recorder)
    disk.fill()
    recorder.record_or_hold(EventType.CAMERA_BLIND, {"reason": "uniform", "after_ms": 500})
    recorder.record_or_hold(EventType.OUTBOX_FULL, THINNING)
    with pytest.raises(OutboxError):
        recorder.record(EventType.HEARTBEAT, {"uptime_s": 1})
    assert recorder.held == 2
    disk.make_room()

    recorder.record(EventType.HEARTBEAT, {"uptime_s": 2})

    events = committed(outbox)
    assert [e.type for e in events] == [EventType.CAMERA_BLIND, EventType.OUTBOX_FULL, EventType.HEARTBEAT]
    assert events[1].payload == THINNING


def test_events_held_when_the_agent_stops_are_tried_once_more_then_logged_whole(
    outbox: Outbox, recorder: EventRecorder, caplog: pytest.LogCaptureFixture
) -> None:
    """Held events lived only in memory: a stop dropped them without a word. Closing the recorder tries them once
    more; those the outbox still refuses are given up with a CRITICAL line each, payload and all."""
    disk = FullDisk(recorder)
    disk.fill()
    recorder.record_or_hold(EventType.CAMERA_BLIND, {"reason": "uniform", "after_ms": 500})
    recorder.record_or_hold(EventType.OUTBOX_FULL, THINNING)
    assert recorder.held == 2

    recorder.close()

    assert recorder.held == 0
    given_up = [r for r in caplog.records if r.levelname == "CRITICAL"]
    assert [r.getMessage().split(" of ")[0] for r in given_up] == ["camera_blind", "outbox_full"]
    assert "'after_ms': 500" in given_up[0].getMessage() and THINNING["snapshots"][-1] in given_up[1].getMessage()
    assert [e.type for e in committed(outbox)] == [EventType.HEARTBEAT] * len(disk.fillers)


def test_an_event_refused_after_the_recorder_closed_is_logged_whole_not_held(
    recorder: EventRecorder, caplog: pytest.LogCaptureFixture
) -> None:
    """A thread that outlives the stop (a spool thinning after a ``snapshot`` command) may still record: held then,
    the event would vanish at exit without the line ``close()`` writes."""
    disk = FullDisk(recorder)
    disk.fill()
    recorder.close()

    recorder.record_or_hold(EventType.OUTBOX_FULL, THINNING)

    assert recorder.held == 0
    [given_up] = [r.getMessage() for r in caplog.records if r.levelname == "CRITICAL"]
    assert given_up.startswith("outbox_full of ") and THINNING["snapshots"][-1] in given_up


def test_events_held_when_the_agent_stops_are_committed_if_there_is_room_by_then(
    outbox: Outbox, recorder: EventRecorder, caplog: pytest.LogCaptureFixture
) -> None:
    disk = FullDisk(recorder)
    disk.fill()
    recorder.record_or_hold(EventType.CAMERA_BLIND, {"reason": "uniform", "after_ms": 500})
    disk.make_room()

    recorder.close()

    assert recorder.held == 0
    assert [e.type for e in committed(outbox)] == [EventType.CAMERA_BLIND]
    assert not [r for r in caplog.records if r.levelname == "CRITICAL"]


def test_a_refusal_the_event_lost_meets_too_is_the_databases_and_the_event_is_kept(
    outbox: Outbox, recorder: EventRecorder
) -> None:
    """A refusal with no passing SQLite code (a trigger's ``RAISE`` is ``SQLITE_CONSTRAINT``) that refuses the small
    ``event_lost`` as well says nothing about the event: it is kept, like on a full disk, and nothing is lost."""
    database = sqlite3.connect(outbox.path, isolation_level=None)
    database.execute("CREATE TRIGGER refuse BEFORE INSERT ON outbox BEGIN SELECT RAISE(ABORT, 'refused (test)'); END")
    recorder.record_or_hold(EventType.CAMERA_BLIND, {"reason": "uniform", "after_ms": 500})
    with pytest.raises(OutboxError) as refused:
        recorder.record(EventType.HEARTBEAT, {})
    assert "SQLITE_CONSTRAINT_TRIGGER" in str(refused.value)
    assert recorder.held == 1 and outbox.depth() == 0
    database.execute("DROP TRIGGER refuse")
    database.close()

    recorder.record(EventType.HEARTBEAT, {})

    assert [e.type for e in committed(outbox)] == [EventType.CAMERA_BLIND, EventType.HEARTBEAT]


def test_a_refusal_the_event_lost_meets_too_is_said_in_the_seal_s_storage_report(
    outbox: Outbox, recorder: EventRecorder
) -> None:
    """The event kept then waits in memory only, as on a full disk: the seal's status must say so (an I/O error: not
    a full disk nor a read-only card), and stop saying it once the outbox takes events again. Before, only a passing
    SQLite code was told to the report: the court saw a clean status while an event waited in memory."""
    told: list[StorageReport | None] = []
    recorder.storage.listener = told.append  # what the MQTT publisher's online status is given
    database = sqlite3.connect(outbox.path, isolation_level=None)
    database.execute("CREATE TRIGGER refuse BEFORE INSERT ON outbox BEGIN SELECT RAISE(ABORT, 'refused (test)'); END")
    recorder.record_or_hold(EventType.CAMERA_BLIND, {"reason": "uniform", "after_ms": 500})
    assert recorder.held == 1
    report = recorder.storage.report
    assert report is not None and report.reason is StorageFault.IO_ERROR and report.held == 1
    assert told == [report]
    database.execute("DROP TRIGGER refuse")
    database.close()

    recorder.record(EventType.HEARTBEAT, {})

    assert recorder.held == 0 and recorder.storage.report is None and told == [report, None]


# -- a running seal: the court receives the event_lost and everything after it ---------------------------------


def seal_events(court: CourtSubscriber) -> list[Envelope]:
    """The seal's events the court received, one per ``seq``, in ``seq`` order."""
    return sorted({r.envelope.seq: r.envelope for r in court.of(DEVICE)}.values(), key=lambda e: e.seq)


def test_an_intrusion_the_outbox_refuses_for_its_own_reason_does_not_hold_up_the_next_trigger(
    tmp_path: Path, broker: PrivateBroker, court: CourtSubscriber, runtimes: RuntimeFactory, mock_pins: MockFactory
) -> None:
    """The trigger worker tried a refused intrusion again for ever, and every later trigger waited behind it."""
    court.receipting = False  # the refusal below looks for the event_lost in the outbox
    config = write_config(tmp_path, broker, heartbeat_s=1)
    speaker = RecordingSpeaker()
    runtime = runtimes(config, speaker=speaker)
    database = sqlite3.connect(runtime.recorder.outbox.path, isolation_level=None)
    database.execute(  # the first intrusion, and only it, is refused every time it is tried
        'CREATE TRIGGER refuse_intrusion BEFORE INSERT ON outbox WHEN instr(NEW.data, \'"type":"intrusion"\') > 0 '
        'AND NOT EXISTS (SELECT 1 FROM outbox WHERE instr(data, \'"lost_type":"intrusion"\') > 0) '
        "BEGIN SELECT RAISE(ABORT, 'refused (test)'); END"
    )
    database.close()
    runtime.start()
    assert runtime.publisher.wait_listening(30)

    pulse(mock_pins)
    assert court.wait_for(lambda c: "event_lost" in c.types(DEVICE)), court.types(DEVICE)
    pulse(mock_pins)
    assert court.wait_for(lambda c: "intrusion" in c.types(DEVICE)), "the next intrusion waited behind the lost one"
    assert court.wait_for(lambda c: seal_events(c)[-1].type is EventType.HEARTBEAT), court.types(DEVICE)

    events = seal_events(court)
    types = [e.type for e in events]
    assert types.index(EventType.EVENT_LOST) < types.index(EventType.INTRUSION) < len(types) - 1
    assert EventType.HEARTBEAT in types[types.index(EventType.EVENT_LOST) :]
    lost = next(e for e in events if e.type is EventType.EVENT_LOST)
    assert lost.payload["lost_type"] == "intrusion" and lost.payload["reason"] == "outbox_refused"
    assert lost.payload["detail"] == "SQLITE_CONSTRAINT_TRIGGER: refused (test)"
    assert parse_ts(lost.payload["lost_ts"]) <= parse_ts(lost.ts)
    assert speaker.wait_plays(1), "the warning does not depend on the event"
    assert check_chain(court.of(DEVICE), verify_key(config)) == sorted(e.seq for e in events)  # signed, chained


def test_a_camera_event_the_outbox_refuses_for_its_own_reason_does_not_silence_the_seal(
    tmp_path: Path, broker: PrivateBroker, court: CourtSubscriber, runtimes: RuntimeFactory
) -> None:
    """``camera_blind`` comes from the camera's thread and is held in memory when refused; held for a refusal that
    is its own, it blocked every later event, heartbeats included: the seal went silent."""
    video = write_clip(tmp_path / "covered.avi", black_frames(40))
    config = write_config(tmp_path, broker, camera=camera_section(video), heartbeat_s=1)
    runtime = runtimes(config)
    database = sqlite3.connect(runtime.recorder.outbox.path, isolation_level=None)
    database.execute(
        'CREATE TRIGGER refuse_blind BEFORE INSERT ON outbox WHEN instr(NEW.data, \'"type":"camera_blind"\') > 0 '
        "BEGIN SELECT RAISE(ABORT, 'refused (test)'); END"
    )
    database.close()
    runtime.start()

    assert court.wait_for(lambda c: "event_lost" in c.types(DEVICE)), court.types(DEVICE)
    assert court.wait_for(lambda c: seal_events(c)[-1].type is EventType.HEARTBEAT), court.types(DEVICE)
    assert runtime.recorder.held == 0
    events = seal_events(court)
    lost = next(e for e in events if e.type is EventType.EVENT_LOST)
    assert lost.payload["lost_type"] == "camera_blind"
    assert "camera_blind" not in [e.type.value for e in events]
    check_chain(court.of(DEVICE), verify_key(config))
