"""A seal moved to another case while its old case's offline alarm is live: the unbinding closes that alarm (the
seal is no longer the case's), and the liveness check reports the seal offline in its new case."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from sqlalchemy import select

from seal_protocol import EventType
from server.alarms.models import Alarm
from server.core.base import utc_now
from server.core.db import SessionFactory, session_scope
from server.ingest.liveness import LivenessChecker
from server.seals.registry import bind_seal, unbind_seal
from tests.server.ingest_world import make_court


def test_a_moved_seal_silent_in_its_new_case_raises_offline_there(
    session_factory: SessionFactory, tmp_path: Path
) -> None:
    court = make_court(session_factory, tmp_path)
    court.send(court.a, court.a.event(EventType.HEARTBEAT, {"armed": True}))
    checker = LivenessChecker(session_factory, offline_after_s=180, interval_s=15)
    t = utc_now()
    assert checker.check(t + timedelta(hours=1)) == ["seal-a"]  # offline in case A
    with session_scope(session_factory) as session:  # the officer takes it to case B's site
        unbind_seal(session, actor=None, device_id="seal-a")
        bind_seal(session, actor=None, device_id="seal-a", case_no=court.b.case_no)
    raised = checker.check(t + timedelta(hours=2))  # still silent, now on case B's premises
    with session_factory() as session:
        rows = [(a.case_no, a.device_id, a.kind, a.state) for a in session.scalars(select(Alarm).order_by(Alarm.id))]
    print("raised:", raised, "alarms:", rows)
    assert raised == ["seal-a"]
    assert (court.b.case_no, "seal-a", "offline", "open") in rows, "case B's judge never told its seal is offline"
    assert (court.a.case_no, "seal-a", "offline", "closed") in rows, "case A keeps a live alarm for a seal it lost"
    with session_factory() as session:
        old = session.scalars(select(Alarm).where(Alarm.case_no == court.a.case_no)).one()
    assert old.closed_note == "system: the seal is no longer bound to the case" and old.closed_by is None
