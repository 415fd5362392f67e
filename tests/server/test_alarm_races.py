"""Two transactions raising a seal's `offline` alarm at once open one (a condition: at most one live per seal and case)
on PostgreSQL: the book each read before the seal's row was locked is looked at again (server.alarms.book)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from sqlalchemy import Engine, select, text

from seal_protocol import EventType, encode_status
from seal_protocol.envelope import utc_now_ms
from seal_protocol.status import SealStatus
from server.alarms.models import Alarm
from server.alarms.service import acknowledge_alarm
from server.config import AlarmSettings
from server.core.base import utc_now
from server.core.db import SessionFactory, make_session_factory, session_scope
from server.core.metrics import IngestMetrics
from server.ingest.ingestor import Ingestor
from server.ingest.liveness import LivenessChecker
from server.ingest.results import Message
from server.notify.models import Notification
from server.notify.targets import add_notification_target
from tests.server.helpers import CASE_A, SimulatedSeal, message, register
from tests.server.pg_locks import Side, wait_for_lock_waits


def _live_offline(session_factory: SessionFactory) -> list[Alarm]:
    with session_factory() as session:
        q = select(Alarm).where(Alarm.kind == "offline", Alarm.state != "closed").order_by(Alarm.id)
        return list(session.scalars(q))


def _setup(session_factory: SessionFactory, pg_engine: Engine, tmp_path: Path, grace: float = 0.0):
    seal = SimulatedSeal("seal-a", CASE_A)
    register(session_factory, seal)
    with session_scope(session_factory) as session:
        add_notification_target(session, case_no=CASE_A, role="judge", url="https://judge.example/j", secret="x" * 20)
    factory = make_session_factory(pg_engine)
    ingestor = Ingestor(
        factory,
        metrics=IngestMetrics(),
        snapshot_dir=tmp_path,
        alarms=AlarmSettings(fold_window_s=300, offline_grace_s=grace),
    )
    ingestor.ingest([message(seal.event_topic, seal.event(EventType.HEARTBEAT, {"armed": True}))])
    return seal, factory, ingestor


def test_two_liveness_checkers_raise_one_offline_alarm(
    pg_engine: Engine, session_factory: SessionFactory, tmp_path: Path
) -> None:
    """Two `seal-server run` behind a load balancer (docs/deploy.md) each run a liveness check."""
    seal, factory, _ = _setup(session_factory, pg_engine, tmp_path)
    one = LivenessChecker(factory, offline_after_s=60, interval_s=1)
    two = LivenessChecker(factory, offline_after_s=60, interval_s=1)
    later = utc_now() + timedelta(hours=1)
    with pg_engine.connect() as pin:
        pin.execute(text("SELECT 1 FROM seals WHERE device_id = 'seal-a' FOR SHARE"))
        a = Side(lambda: one.check(later))
        wait_for_lock_waits(pg_engine, 1)
        b = Side(lambda: two.check(later))
        wait_for_lock_waits(pg_engine, 2)
        pin.rollback()
        ra, rb = a.join(), b.join()
    print("raised:", ra, rb)
    live = _live_offline(session_factory)
    with session_factory() as session:
        sent = session.scalars(select(Notification)).all()
    print("live offline alarms:", [(x.id, x.details) for x in live], "notifications:", len(sent))
    assert len(live) == 1, f"{len(live)} live offline alarms for one seal"
    assert len(sent) == 1, "one alarm, one notification to the judge"


def test_liveness_and_an_ingested_will_raise_one_offline_alarm(
    pg_engine: Engine, session_factory: SessionFactory, tmp_path: Path
) -> None:
    """The liveness check and an ingest worker storing the seal's Last Will (grace 0) at the same moment."""
    seal, factory, ingestor = _setup(session_factory, pg_engine, tmp_path, grace=0.0)
    checker = LivenessChecker(factory, offline_after_s=60, interval_s=1)
    later = utc_now() + timedelta(hours=1)
    will = encode_status(SealStatus.OFFLINE, ts=utc_now_ms(utc_now()))
    with pg_engine.connect() as pin:
        pin.execute(text("SELECT 1 FROM seals WHERE device_id = 'seal-a' FOR SHARE"))
        a = Side(lambda: checker.check(later))
        wait_for_lock_waits(pg_engine, 1)
        b = Side(lambda: ingestor.ingest([Message(seal.status_topic, will, utc_now())]))
        wait_for_lock_waits(pg_engine, 2)
        pin.rollback()
        print(a.join(), b.join())
    live = _live_offline(session_factory)
    print("live offline alarms:", [(x.id, x.details) for x in live])
    assert len(live) == 1, f"{len(live)} live offline alarms for one seal"


def test_two_workers_storing_offline_statuses_raise_one_offline_alarm(
    pg_engine: Engine, session_factory: SessionFactory, tmp_path: Path
) -> None:
    """Two ingest workers (shared subscription) each get an offline status of the seal (the Will, and the retained
    Will the broker sends a worker that resubscribes)."""
    seal, factory, one = _setup(session_factory, pg_engine, tmp_path, grace=0.0)
    two = Ingestor(
        factory,
        metrics=IngestMetrics(),
        snapshot_dir=tmp_path / "2",
        alarms=AlarmSettings(fold_window_s=300, offline_grace_s=0),
    )
    will = encode_status(SealStatus.OFFLINE, ts=utc_now_ms(utc_now()))
    with pg_engine.connect() as pin:
        pin.execute(text("SELECT 1 FROM seals WHERE device_id = 'seal-a' FOR SHARE"))
        a = Side(lambda: one.ingest([Message(seal.status_topic, will, utc_now())]))
        wait_for_lock_waits(pg_engine, 1)
        b = Side(lambda: two.ingest([Message(seal.status_topic, will, utc_now())]))
        wait_for_lock_waits(pg_engine, 2)
        pin.rollback()
        print(a.join(), b.join())
    live = _live_offline(session_factory)
    print("live offline alarms:", [(x.id, x.details) for x in live])
    assert len(live) == 1, f"{len(live)} live offline alarms for one seal"


def test_two_workers_storing_intrusions_after_an_acknowledgement_open_one_alarm(
    pg_engine: Engine, session_factory: SessionFactory, tmp_path: Path
) -> None:
    """The seal's intrusion alarm acknowledged; two more intrusions, one to each ingest worker: one new alarm, counted
    twice. Each worker's book locks the acknowledged alarm, which the other opened the new one behind: without
    looking again, the second opened another (one more alert and notification)."""
    seal, factory, one = _setup(session_factory, pg_engine, tmp_path, grace=0.0)
    two = Ingestor(factory, metrics=IngestMetrics(), snapshot_dir=tmp_path / "2", alarms=AlarmSettings())
    armed = {"armed": True, "warning": "played"}
    one.ingest([message(seal.event_topic, seal.event(EventType.INTRUSION, armed))])
    [first] = _live(session_factory, "intrusion")
    with session_scope(session_factory) as session:
        acknowledge_alarm(session, alarm_id=first.id, user_id=7, note="officer on the way")
    second, third = (message(seal.event_topic, seal.event(EventType.INTRUSION, armed)) for _ in range(2))
    with pg_engine.connect() as pin:
        pin.execute(text("SELECT 1 FROM alarms WHERE id = :id FOR SHARE"), {"id": first.id})
        a = Side(lambda: one.ingest([second]))
        wait_for_lock_waits(pg_engine, 1)
        b = Side(lambda: two.ingest([third]))
        wait_for_lock_waits(pg_engine, 2)
        pin.rollback()
        print(a.join(), b.join())
    alarms = [(x.state, x.count) for x in _live(session_factory, "intrusion")]
    assert alarms == [("acknowledged", 1), ("open", 2)], alarms


def _live(session_factory: SessionFactory, kind: str) -> list[Alarm]:
    with session_factory() as session:
        q = select(Alarm).where(Alarm.kind == kind, Alarm.state != "closed").order_by(Alarm.id)
        return list(session.scalars(q))
