"""A worker's caught-up mark does not pass an event beyond a gap it received before the marker until it is stored —
with ``[mqtt] gap_wait_s`` it is stored at once (once held back, unacknowledged, for its predecessor: the mark ran
ahead of it, then waited for it): the court's judging moment (command expiry, liveness) never passes it unstored,
and a command it answers in time is not expired."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import func, select

from seal_dev.broker import PrivateBroker
from seal_protocol import EventType
from seal_protocol.commands import CommandAction
from seal_protocol.signing import generate_signing_key
from server.alarms.models import Alarm
from server.auth.access import Role
from server.auth.users import get_user
from server.commands.dispatcher import EXPIRY_MARGIN
from server.commands.failures import expire_due_and_alarm
from server.commands.models import CourtCommand
from server.commands.service import issue_command
from server.core.base import utc_now
from server.core.db import SessionFactory, session_scope
from server.core.metrics import IngestMetrics
from server.evidence.models import Event
from server.ingest.ingestor import Ingestor
from server.ingest.mqtt import MqttIngest
from server.marks.marks import judging_moment, read_marks
from server.marks.models import IngestMark
from server.seals.models import Seal
from tests.agent.helpers import wait_until
from tests.server.auth_helpers import add_user
from tests.server.helpers import CASE_A, SimulatedSeal, register
from tests.server.mqtt_helpers import seal_connection, server_mqtt_settings

#: Long enough that a mark passing the held event shows before the event is stored; and above EXPIRY_MARGIN (2 s)
#: plus the command's TTL, so that the dispatcher's rule would expire a command whose answer is held.
GAP_WAIT_S = 8.0
TTL_S = 2.0
WAIT_S = 30.0


def _worker(broker: PrivateBroker, session_factory: SessionFactory, tmp_path: Path) -> MqttIngest:
    settings = server_mqtt_settings(broker, tmp_path).model_copy(
        update={"shared_group": "court-ingest", "gap_wait_s": GAP_WAIT_S, "mark_interval_s": 0.1, "batch_size": 5}
    )
    ingestor = Ingestor(session_factory, metrics=IngestMetrics(), snapshot_dir=tmp_path / "s", gap_wait_s=GAP_WAIT_S)
    worker = MqttIngest(settings, ingestor, role="w1")
    worker.start()
    assert worker.wait_subscribed(WAIT_S), "the worker did not subscribe"
    return worker


def test_the_mark_does_not_pass_an_event_held_back_until_it_is_stored(
    broker: PrivateBroker, session_factory: SessionFactory, tmp_path: Path
) -> None:
    seal = SimulatedSeal("seal-a", CASE_A)
    register(session_factory, seal)
    worker = _worker(broker, session_factory, tmp_path)
    try:
        with seal_connection(broker, seal.device_id) as conn:
            conn.client.publish(seal.event_topic, seal.event(EventType.HEARTBEAT), qos=1).wait_for_publish(WAIT_S)
            assert wait_until(lambda: _seqs(session_factory) == [1], WAIT_S), _seqs(session_factory)
            seal.event(EventType.HEARTBEAT)  # seq 2: lost, or in another worker's session
            conn.client.publish(seal.event_topic, seal.event(EventType.HEARTBEAT), qos=1).wait_for_publish(WAIT_S)
            received = datetime.now(UTC)  # the broker has seq 3: every marker sent from now on comes after it
            passed_unstored = []
            deadline = time.monotonic() + GAP_WAIT_S + WAIT_S
            while time.monotonic() < deadline:
                mark = _mark(session_factory)  # first the mark, then what is stored: a mark implies its events
                seqs = _seqs(session_factory)
                if mark is not None and mark > received:
                    if seqs != [1, 3]:
                        passed_unstored.append((mark, seqs))
                    break
                time.sleep(0.05)
    finally:
        worker.stop()
    assert passed_unstored == [], "the mark passed seq 3 while it was held back, not stored"
    assert _seqs(session_factory) == [1, 3]
    mark = _mark(session_factory)
    assert mark is not None and mark > received, "the mark held back with seq 3 never passed"


def test_a_command_answered_in_time_is_not_expired_while_its_answer_is_held_back(
    broker: PrivateBroker, session_factory: SessionFactory, tmp_path: Path
) -> None:
    """The dispatcher's rule (expire what was due before the judging moment less EXPIRY_MARGIN) does not expire a
    command whose ``command_ack``, received within its TTL, waits for its predecessor; no ``disarm_failed``."""
    seal = SimulatedSeal("seal-a", CASE_A)
    register(session_factory, seal)
    add_user(session_factory, "judge", Role.JUDGE, (CASE_A,))
    worker = _worker(broker, session_factory, tmp_path)
    expired: list[object] = []
    try:
        with seal_connection(broker, seal.device_id) as conn:
            conn.client.publish(seal.event_topic, seal.event(), qos=1).wait_for_publish(WAIT_S)
            assert wait_until(lambda: _seqs(session_factory) == [1], WAIT_S), _seqs(session_factory)
            with session_scope(session_factory) as session:
                row = session.scalars(select(Seal).where(Seal.device_id == seal.device_id)).one()
                judge = get_user(session, username="judge")
                command = issue_command(
                    session,
                    seal=row,
                    action=CommandAction.DISARM,
                    args={},
                    key=generate_signing_key(),
                    ttl=timedelta(seconds=TTL_S),
                    user=judge,
                    now=utc_now(),
                )
                command_id = command.id
            seal.event()  # seq 2: lost, or in another worker's session
            answer = {"command_id": command_id, "action": "disarm", "result": "disarmed"}
            ack = seal.event(EventType.COMMAND_ACK, answer)  # seq 3, within the TTL
            conn.client.publish(seal.event_topic, ack, qos=1).wait_for_publish(WAIT_S)
            deadline = time.monotonic() + GAP_WAIT_S + WAIT_S
            while time.monotonic() < deadline:
                stored = _seqs(session_factory) == [1, 3]  # before the judging: stored, its command is answered
                with session_scope(session_factory) as session:  # the dispatcher's rule
                    now = utc_now()
                    judged = judging_moment(now, read_marks(session), forget_s=600)
                    due_before = now if judged >= now else judged - EXPIRY_MARGIN
                    expired += expire_due_and_alarm(session, now=now, due_before=due_before)
                if stored:
                    break
                time.sleep(0.2)
    finally:
        worker.stop()
    assert expired == [], "the command was expired while its answer was held back"
    assert _seqs(session_factory) == [1, 3]
    with session_factory() as session:
        command_row = session.get(CourtCommand, command_id)
        assert command_row is not None and command_row.state == "acknowledged"
        kinds = list(session.scalars(select(Alarm.kind)))
    assert "disarm_failed" not in kinds, kinds


def _seqs(session_factory: SessionFactory) -> list[int]:
    with session_factory() as session:
        return list(session.scalars(select(Event.seq).order_by(Event.seq)))


def _mark(session_factory: SessionFactory) -> datetime | None:
    with session_factory() as session:
        return session.scalar(select(func.max(IngestMark.caught_up_at)))
