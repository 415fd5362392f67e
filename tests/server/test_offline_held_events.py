"""An ``offline`` alarm and the seal's events a worker that was behind stores after another stored the Last Will.

With several ingest workers, a paused or restarting one may still hold a seal's last events when another stores its
Will. Stored afterwards, they were received *before* the Will: no sign of the seal after it. Such an event leaves the
alarm live (it used to close it: "event seq 2 received", and with a grace the next liveness round opened a second
``offline`` alarm and a second webhook for one outage); the seal's next event received after the Will closes it. The
ingest's close and the liveness check's raise share one rule (server.alarms.back_online)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import select

from seal_protocol import encode_status
from seal_protocol.status import SealStatus
from server.alarms.back_online import closes_offline, spoke_after
from server.alarms.models import Alarm
from server.core.base import utc_now
from server.core.db import SessionFactory, session_scope
from server.ingest.liveness import LivenessChecker, Sighting, find_gone_seals
from server.ingest.results import Message
from server.notify.models import Notification, NotificationTarget
from tests.server.ingest_world import Court, make_court

T0 = datetime.now(UTC).replace(microsecond=0)


def _will(court: Court, at: datetime) -> None:
    court.ingestor.ingest([Message(court.a.status_topic, encode_status(SealStatus.OFFLINE), at)])


def _offline(court: Court) -> list[tuple[str, str | None]]:
    return [(a.state, a.closed_note) for a in court.alarms("offline")]


def _notified(court: Court) -> list[int]:
    with court.session_factory() as session:
        return list(session.scalars(select(Notification.alarm_id).order_by(Notification.id)))


def test_an_event_received_before_the_will_leaves_offline_open_and_the_next_one_closes_it(
    session_factory: SessionFactory, tmp_path: Path
) -> None:
    court = make_court(session_factory, tmp_path)
    a = court.a
    court.send(a, a.event(at=T0), at=T0)
    held = a.event(at=T0 + timedelta(seconds=4))  # received at T0 + 5 by a worker that then paused
    _will(court, T0 + timedelta(seconds=10))  # another worker stores the Will: offline at once (no grace)
    court.send(a, held, at=T0 + timedelta(seconds=5))  # the paused worker stores it at last
    print("after the held event:", _offline(court))
    assert _offline(court) == [("open", None)], "an event received before the Will closed the offline alarm"
    [alarm] = court.alarms("offline")  # the Will's receive time, as the liveness check's alarm after a grace holds
    assert alarm.details["offline_since"] == (T0 + timedelta(seconds=10)).isoformat()
    court.send(a, a.event(at=T0 + timedelta(seconds=70)), at=T0 + timedelta(seconds=71))  # the seal is back
    assert _offline(court) == [("closed", "system: event seq 3 received")]


def test_with_a_grace_a_held_event_neither_closes_the_alarm_nor_pages_twice(
    session_factory: SessionFactory, tmp_path: Path
) -> None:
    court = make_court(session_factory, tmp_path, offline_grace_s=60)
    a = court.a
    with session_scope(session_factory) as session:
        session.add(NotificationTarget(case_no=a.case_no, role="judge", url="https://judge.example/hook"))
    t0 = utc_now()
    court.send(a, a.event(at=t0), at=t0)
    held = a.event(at=t0 + timedelta(seconds=4))
    _will(court, t0 + timedelta(seconds=10))
    checker = LivenessChecker(session_factory, offline_after_s=180, interval_s=15, offline_grace_s=60)
    assert checker.check(t0 + timedelta(seconds=80)) == ["seal-a"]  # past the grace, not back: paged
    court.send(a, held, at=t0 + timedelta(seconds=5))
    assert checker.check(t0 + timedelta(seconds=95)) == []  # still gone, and already told
    print("offline alarms:", _offline(court), "notifications:", _notified(court))
    assert _offline(court) == [("open", None)]
    assert len(_notified(court)) == 1, "one outage, two webhooks"


def test_a_silence_alarm_is_closed_only_by_an_event_received_after_the_last_one_it_judged(
    session_factory: SessionFactory, tmp_path: Path
) -> None:
    """Silence (``reason: silent``): an event received before the ``last_seen_at`` the alarm holds shows nothing of
    the seal after what was judged silent; one received after it does."""
    court = make_court(session_factory, tmp_path)
    a = court.a
    court.send(a, a.event(at=T0), at=T0)
    held = a.event(at=T0 + timedelta(seconds=1))  # received at T0 + 1, stored after seq 3
    court.send(a, a.event(at=T0 + timedelta(seconds=2)), at=T0 + timedelta(seconds=2))
    checker = LivenessChecker(session_factory, offline_after_s=180, interval_s=15)
    assert checker.check(T0 + timedelta(hours=1)) == ["seal-a"]
    [alarm] = court.alarms("offline")
    assert alarm.details["last_seen_at"] == (T0 + timedelta(seconds=2)).isoformat()
    court.send(a, held, at=T0 + timedelta(seconds=1))
    assert _offline(court) == [("open", None)]
    court.send(a, a.event(), at=T0 + timedelta(hours=1, seconds=5))
    assert _offline(court) == [("closed", "system: event seq 4 received")]


def test_the_close_and_the_raise_after_the_grace_agree() -> None:
    """The liveness check treats the seal as gone exactly when its last event would not close the alarm."""
    will = T0 + timedelta(seconds=10)
    for received in (T0 + timedelta(seconds=5), will, will + timedelta(microseconds=1), None):
        sighting = Sighting("seal-a", "case-1", received, "offline", will)
        gone = bool(find_gone_seals(will + timedelta(seconds=61), [sighting], grace_s=60))
        assert gone is not spoke_after(received, will)
        if received is not None:
            alarm = Alarm(details={"reason": "offline_status", "offline_since": will.isoformat()})
            assert closes_offline(received)(alarm) is not gone
