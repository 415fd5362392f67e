"""Every alarm raised from an event the court received well after the seal says it happened (a seal offline for days
draining its outbox, its binding still current, its clock synchronised by its own word) says so in its details:
``ts`` (by the seal's clock), ``received_at`` and ``delayed_s``, so that the pages show both times and word its alert
as a delayed report. Before, an intrusion delivered 36 h late opened an alarm that looked like one happening now.
(A seal whose clock is not known to be synchronised: tests/server/test_alarm_time_truth.py.)"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import select, update

from seal_protocol import EventType
from seal_protocol.commands import CommandAction
from seal_protocol.envelope import utc_now_ms
from server.alarms.event_details import DELIVERED_LATE_AFTER
from server.alarms.models import Alarm
from server.core.court_clock import court_clock
from server.core.db import SessionFactory, session_scope
from server.export.report import render_report
from server.export.report_facts import AlarmFacts, ReportTiming
from server.ingest.results import Message, Outcome
from server.seals.models import SealBinding
from tests.server.ingest_world import make_court
from tests.server.test_commands import World
from tests.server.test_report_pdf import T0, facts, pdf_text

INTRUSION = {"armed": True, "warning": "played", "camera": "ok", "camera_motion": "seen", "snapshots": []}
FAILED = [{"language": "zh", "result": "failed"}]
DELAY = timedelta(hours=36)
#: A heartbeat's word that the seal's clock is synchronised (docs/protocol.md, "The seal's clock").
SYNCED = {"clock": {"synced": True, "max_error_ms": 5}}


def bound_since(session_factory: SessionFactory, when: datetime) -> None:
    """The seals' bindings began at ``when`` (they were installed days ago)."""
    with session_scope(session_factory) as session:
        session.execute(update(SealBinding).values(bound_at=when))


def test_every_alarm_from_an_event_delivered_36_h_late_says_when_it_happened_and_was_received(
    session_factory: SessionFactory, tmp_path: Path
) -> None:
    court = make_court(session_factory, tmp_path)
    a, b = court.a, court.b
    received = datetime.now(UTC).replace(microsecond=0)
    happened = received - DELAY
    bound_since(session_factory, happened - timedelta(days=1))
    events = [
        a.event(EventType.HEARTBEAT, SYNCED, at=happened - timedelta(minutes=1)),  # its clock was synchronised
        # intrusion, and speaker_failed from its failed warning
        a.event(EventType.INTRUSION, {**INTRUSION, "warning": "failed", "warning_languages": FAILED}, at=happened),
        a.event(EventType.CAMERA_LOST, {"reason": "read_failed"}, at=happened),
        # refused, in another case's name: case_mismatch (its intrusion's record too)
        a.event(EventType.INTRUSION, INTRUSION, case_no=b.case_no, at=happened),
    ]
    court.send(a, *events, at=received)
    alarms = court.alarms()
    kinds = {alarm.kind for alarm in alarms}
    assert {"intrusion", "speaker_failed", "camera_lost", "case_mismatch"} <= kinds, kinds
    for alarm in alarms:
        assert alarm.details["ts"] == utc_now_ms(happened), (alarm.kind, alarm.details)
        assert alarm.details["received_at"] == utc_now_ms(received), (alarm.kind, alarm.details)
        assert alarm.details["delayed_s"] == DELAY.total_seconds(), (alarm.kind, alarm.details)
        assert "late" not in alarm.details  # its binding is current: "late" is of an ended binding
        assert "clock_gap_s" not in alarm.details and "clock_synced" not in alarm.details
    [mismatch] = court.alarms("case_mismatch")
    assert mismatch.details["intrusions"]["last"]["delayed_s"] == DELAY.total_seconds()


def test_an_event_received_within_the_threshold_carries_no_delay(
    session_factory: SessionFactory, tmp_path: Path
) -> None:
    court = make_court(session_factory, tmp_path)
    a, b = court.a, court.b
    received = datetime.now(UTC).replace(microsecond=0)
    bound_since(session_factory, received - timedelta(days=1))
    at = received - DELIVERED_LATE_AFTER
    court.send(
        a, a.event(EventType.HEARTBEAT, SYNCED, at=at), a.event(EventType.INTRUSION, INTRUSION, at=at), at=received
    )
    # a seal whose clock is ahead, though it says it is synchronised: "received before it happened", no delay either
    # (one not synchronised: tests/server/test_alarm_time_truth.py)
    ahead = received + timedelta(hours=1)
    court.send(
        b,
        b.event(EventType.HEARTBEAT, SYNCED, at=ahead),
        b.event(EventType.INTRUSION, INTRUSION, at=ahead),
        at=received,
    )
    alarms = court.alarms("intrusion")
    assert len(alarms) == 2
    for alarm in alarms:
        assert "received_at" not in alarm.details and "delayed_s" not in alarm.details, alarm.details


def test_a_payload_cannot_claim_the_delay_marks(session_factory: SessionFactory, tmp_path: Path) -> None:
    """The marks are the court's findings: a seal's payload naming them is written over, or dropped."""
    court = make_court(session_factory, tmp_path)
    a = court.a
    received = datetime.now(UTC).replace(microsecond=0)
    forged = {**INTRUSION, "received_at": "2020-01-01T00:00:00.000Z", "delayed_s": 99999}
    court.send(a, a.event(EventType.INTRUSION, forged, at=received), at=received)
    [alarm] = court.alarms("intrusion")
    assert "received_at" not in alarm.details and "delayed_s" not in alarm.details, alarm.details


def test_a_refused_arm_received_late_says_so(session_factory: SessionFactory, tmp_path: Path) -> None:
    """The arm or disarm alarm of a refusal is raised from the seal's event too: it carries the same marks."""
    world = World(session_factory, tmp_path / "snapshots")
    arm = world.issue(CommandAction.ARM, ttl=timedelta(hours=2))
    signed = datetime.now(UTC).replace(microsecond=0)
    received = signed + timedelta(hours=1)
    refusal = {"command_id": arm, "reason": "not_yet_valid", "detail": "x"}
    heartbeat = world.seal.event(EventType.HEARTBEAT, SYNCED, at=signed - timedelta(seconds=30))
    data = world.seal.event(EventType.COMMAND_REJECTED, refusal, at=signed)
    results = world.ingestor.ingest([Message(world.seal.event_topic, m, received) for m in (heartbeat, data)])
    assert [r.outcome for r in results] == [Outcome.STORED, Outcome.STORED]
    with session_factory() as session:
        [alarm] = session.scalars(select(Alarm).where(Alarm.kind == "arm_failed")).all()
    assert alarm.details["received_at"] == utc_now_ms(received)
    assert alarm.details["delayed_s"] == 3600


def test_the_report_s_table_of_alarms_marks_a_delayed_report_with_the_seal_s_time() -> None:
    report = ReportTiming(utc_now_ms(T0), seq=7, delayed_s=36 * 3600)
    alarm = AlarmFacts(1, "seal-01", "intrusion", "critical", "open", T0, 1, [], report=report)
    text = pdf_text(render_report(facts(alarms=[alarm])))
    text = text.replace("紧急", "").replace("Critical", "")  # the next column's words, which pdftotext interleaves
    seal_time = court_clock(T0).replace(" ", "")  # pdftotext's text of a table cell has no spaces
    assert f"入侵（迟报：据封条时钟发生于{seal_time}，法院晚36h才收到）" in text, text
    assert f"delayedreport:happened{seal_time}bytheseal'sclock,receivedbythecourt36hlater" in text
