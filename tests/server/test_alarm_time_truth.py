"""What an alarm says of when its event was reported is what the court knows (server/alarms/event_details.py).

- A seal whose clock is not synchronised by its own signed word (a heartbeat's ``clock.synced: false``, or no word at
  all) and is behind by more than 180 s had every alarm marked 迟报 / "delayed report by N s", though it delivered at
  once; one ahead never did. Now such an alarm says the time is in doubt (``clock_gap_s``, ``clock_synced``), either
  way, and claims no delay.
- An intrusion alarm that a later event folds into took the later event's details whole: opened by a delayed report
  and folded by an on-time one, nothing said any more that its first intrusion was reported late. Now the opening
  report's marks stay under ``opening``; a delayed fold of an on-time alarm is the latest report's, not the opening's.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from seal_protocol import EventType
from seal_protocol.envelope import utc_now_ms
from server.core.court_clock import court_clock
from server.core.db import SessionFactory
from server.export.report import render_report
from server.export.report_facts import AlarmFacts, ReportTiming
from tests.server.ingest_world import make_court
from tests.server.test_delayed_alarms import INTRUSION, SYNCED, bound_since
from tests.server.test_report_pdf import T0, facts, pdf_text

UNSYNCED = {"clock": {"synced": False, "max_error_ms": 16000}}
OFF = timedelta(hours=1)


def test_a_seal_whose_clock_is_behind_and_unsynchronised_is_not_called_late(
    session_factory: SessionFactory, tmp_path: Path
) -> None:
    """The seal delivers at once, its clock an hour behind and saying so: its time is in doubt, no delay claimed."""
    court = make_court(session_factory, tmp_path)
    a = court.a
    now = datetime.now(UTC).replace(microsecond=0)
    bound_since(session_factory, now - timedelta(days=1))
    court.send(a, a.event(EventType.HEARTBEAT, UNSYNCED, at=now - OFF), at=now)
    court.send(a, a.event(EventType.INTRUSION, INTRUSION, at=now + timedelta(seconds=5) - OFF), at=now)
    [clock] = court.alarms("clock_unsynced")
    [intrusion] = court.alarms("intrusion")
    for alarm in (clock, intrusion):
        assert "delayed_s" not in alarm.details, (alarm.kind, alarm.details)
        assert alarm.details["clock_synced"] is False
        assert alarm.details["received_at"] == utc_now_ms(now)
    assert clock.details["clock_gap_s"] == 3600
    assert intrusion.details["clock_gap_s"] == 3595


def test_a_seal_whose_clock_is_ahead_and_unsynchronised_is_marked_in_doubt_too(
    session_factory: SessionFactory, tmp_path: Path
) -> None:
    court = make_court(session_factory, tmp_path)
    a = court.a
    now = datetime.now(UTC).replace(microsecond=0)
    bound_since(session_factory, now - timedelta(days=1))
    court.send(a, a.event(EventType.HEARTBEAT, UNSYNCED, at=now + OFF), at=now)
    court.send(a, a.event(EventType.INTRUSION, INTRUSION, at=now + OFF), at=now)
    [intrusion] = court.alarms("intrusion")
    assert intrusion.details["clock_gap_s"] == -3600 and intrusion.details["clock_synced"] is False
    assert "delayed_s" not in intrusion.details


def test_a_seal_that_never_said_whether_its_clock_was_synchronised_is_not_called_late(
    session_factory: SessionFactory, tmp_path: Path
) -> None:
    """A seal from before the clock fields (its heartbeats carry no ``clock``): the court cannot know either."""
    court = make_court(session_factory, tmp_path)
    a = court.a
    now = datetime.now(UTC).replace(microsecond=0)
    bound_since(session_factory, now - timedelta(days=3))
    happened = now - timedelta(hours=36)
    court.send(a, a.event(EventType.HEARTBEAT, {}, at=happened), a.event(EventType.INTRUSION, INTRUSION, at=happened))
    [intrusion] = court.alarms("intrusion")
    assert intrusion.details["clock_gap_s"] == 36 * 3600 and intrusion.details["clock_synced"] is None
    assert "delayed_s" not in intrusion.details


def test_the_word_in_force_at_the_event_counts_a_step_to_a_synchronised_clock_before_it(
    session_factory: SessionFactory, tmp_path: Path
) -> None:
    """Unsynchronised at first, then NTP stepped the clock to a synchronised time (``clock_stepped``), then the seal
    went offline: its intrusion, delivered 36 h later, was a delayed report. A later word (after the intrusion in
    ``seq``) saying unsynchronised changes nothing of it."""
    court = make_court(session_factory, tmp_path)
    a = court.a
    now = datetime.now(UTC).replace(microsecond=0)
    bound_since(session_factory, now - timedelta(days=3))
    happened = now - timedelta(hours=36)
    step = {"step_ms": 3_600_000, "before": utc_now_ms(happened - OFF), "after": utc_now_ms(happened), "synced": True}
    court.send(
        a,
        a.event(EventType.HEARTBEAT, UNSYNCED, at=happened - OFF),
        a.event(EventType.CLOCK_STEPPED, step, at=happened),
        a.event(EventType.INTRUSION, INTRUSION, at=happened),
        a.event(EventType.HEARTBEAT, UNSYNCED, at=happened + timedelta(hours=10)),
        at=now,
    )
    [intrusion] = court.alarms("intrusion")
    assert intrusion.details["delayed_s"] == 36 * 3600, intrusion.details
    assert "clock_gap_s" not in intrusion.details


def test_an_on_time_fold_keeps_the_opening_delayed_report(session_factory: SessionFactory, tmp_path: Path) -> None:
    court = make_court(session_factory, tmp_path)
    a = court.a
    now = datetime.now(UTC).replace(microsecond=0)
    bound_since(session_factory, now - timedelta(days=3))
    happened = now - timedelta(hours=36)
    court.send(
        a,
        a.event(EventType.HEARTBEAT, SYNCED, at=happened - timedelta(minutes=1)),
        a.event(EventType.INTRUSION, INTRUSION, at=happened),  # seq 2: drained from the outbox
        at=now,
    )
    for n in (1, 2):  # on time, within the fold window: folded into the open alarm
        later = now + timedelta(seconds=10 * n)
        court.send(a, a.event(EventType.INTRUSION, INTRUSION, at=later), at=later)
    [alarm] = court.alarms("intrusion")
    assert alarm.count == 3
    assert alarm.details["seq"] == 4 and "delayed_s" not in alarm.details  # the latest report: on time
    assert alarm.details["opening"] == {
        "event_type": "intrusion",
        "seq": 2,
        "ts": utc_now_ms(happened),
        "received_at": utc_now_ms(now),
        "delayed_s": 36 * 3600,
    }


def test_a_delayed_fold_of_an_on_time_alarm_is_the_latest_report_s_not_the_opening_s(
    session_factory: SessionFactory, tmp_path: Path
) -> None:
    court = make_court(session_factory, tmp_path)
    a = court.a
    now = datetime.now(UTC).replace(microsecond=0)
    bound_since(session_factory, now - timedelta(days=3))
    court.send(a, a.event(EventType.HEARTBEAT, SYNCED, at=now), a.event(EventType.INTRUSION, INTRUSION, at=now), at=now)
    # the seal's next intrusion came in late (its last outbox retry), within the fold window by the court's clock
    late = now + timedelta(seconds=20)
    court.send(a, a.event(EventType.INTRUSION, INTRUSION, at=late - timedelta(minutes=10)), at=late)
    [alarm] = court.alarms("intrusion")
    assert alarm.count == 2 and alarm.details["delayed_s"] == 600 and "opening" not in alarm.details
    # another on-time one: nothing of the delayed fold is taken for the opening's
    later = now + timedelta(seconds=40)
    court.send(a, a.event(EventType.INTRUSION, INTRUSION, at=later), at=later)
    [alarm] = court.alarms("intrusion")
    assert alarm.count == 3 and "delayed_s" not in alarm.details and "opening" not in alarm.details, alarm.details


def test_the_report_names_the_opening_report_and_the_latest_and_a_time_in_doubt() -> None:
    opening = ReportTiming(utc_now_ms(T0), seq=2, delayed_s=36 * 3600)
    latest = ReportTiming(utc_now_ms(T0 + timedelta(hours=2)), seq=9, clock_gap_s=-3600, clock_synced=False)
    alarm = AlarmFacts(1, "seal-01", "intrusion", "critical", "open", T0, 3, [], report=latest, opening=opening)
    text = pdf_text(render_report(facts(alarms=[alarm])))
    text = text.replace("紧急", "").replace("Critical", "").replace(" ", "").replace("\n", "")
    first, last = court_clock(T0).replace(" ", ""), court_clock(T0 + timedelta(hours=2)).replace(" ", "")
    assert f"首次报告（序号2）—迟报：据封条时钟发生于{first}，法院晚36h才收到" in text, text
    assert f"最近一次报告（序号9）—时间存疑：封条自报时钟未同步，据其时钟发生于{last}，与法院收到时间相差60min" in text
    assert f"firstreport(seq2)—delayedreport:happened{first}bytheseal'sclock" in text
    assert "latestreport(seq9)—timeindoubt:thesealsaiditsclockwasnotsynchronised" in text
    assert "delayedreport:happened" + last not in text
