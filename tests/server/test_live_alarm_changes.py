"""Every alarm the ingest opens, folds into, updates or closes is told to the pages' live bus, after the commit, as an
``alarm`` change of its seal and case — whatever became of the message that caused it.

Before, the live bus heard only what the batch's outcomes named (an event stored, a status, a picture): an intrusion
the seal signed under a mistyped case number is refused (``wrong_case``, quarantined, no case) while it folds into the
seal's HIGH ``case_mismatch`` alarm in its bound case, which then alerts — and no open dashboard learned of it until a
reload (the hostile review of the live dashboard). The check below is the class's, not the example's: for each step,
the alarms whose row changed in the database are compared with the alarm changes ``on_commit`` was handed.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from sqlalchemy import select

from seal_dev.broker import PrivateBroker
from seal_protocol import EventType, SealStatus, encode_status
from server.alarms.models import Alarm
from server.config import AlarmSettings, IngestSettings
from server.core.base import utc_now
from server.core.db import SessionFactory
from server.core.live import Change, LiveHub
from server.core.live_feed import LiveFeed
from server.core.metrics import IngestMetrics
from server.core.stop_signals import StopFlag
from server.ingest.changes import live_changes
from server.ingest.ingestor import Ingestor
from server.ingest.results import IngestResult, Message
from server.ingest.workers import run_worker
from tests.agent.helpers import wait_until
from tests.server.auth_helpers import make_settings
from tests.server.helpers import CASE_A, CASE_B, SimulatedSeal, message, register
from tests.server.ingest_world import make_court
from tests.server.mqtt_helpers import server_mqtt_settings

MISTYPED = "(2021)苏0214执1243号"  # CASE_A with two digits swapped
ROWS = 2  # refused messages of one account kept as quarantine rows per window: the third is a flood
#: (the seal and case of each alarm whose row changed, those the live bus was told) of a step's batch.
Step = Callable[..., tuple[set[tuple[str, str | None]], set[tuple[str | None, str | None]]]]
GAP_WAIT_S = 0.5  # short enough for a test to wait out
WAIT_S = 60.0


class Told:
    """The ingest's ``on_commit``: what the running server publishes on the live bus (:mod:`server.app`)."""

    def __init__(self) -> None:
        self.changes: list[Change] = []

    def __call__(self, results: Sequence[IngestResult], alarms: set[tuple[str, str]]) -> None:
        self.changes += live_changes(results, alarms)


def _alarms(session_factory: SessionFactory) -> dict[int, tuple[object, ...]]:
    """Every alarm's row as compared between steps, by id."""
    with session_factory() as session:
        return {
            a.id: (a.device_id, a.case_no, a.kind, a.state, a.count, a.last_seen_at, json.dumps(a.details))
            for a in session.scalars(select(Alarm))
        }


@pytest.fixture
def ingest(session_factory: SessionFactory, tmp_path: Path) -> Step:
    told = Told()
    ingestor = Ingestor(
        session_factory,
        metrics=IngestMetrics(),
        snapshot_dir=tmp_path / "snapshots",
        alarms=AlarmSettings(offline_grace_s=0),
        ingest=IngestSettings(quarantine_seal_rows=ROWS),
        on_commit=told,
    )

    def step(*messages: tuple[str, bytes]) -> tuple[set[tuple[str, str | None]], set[tuple[str | None, str | None]]]:
        """Ingest ``messages`` as one batch: (the seal and case of each alarm whose row changed, those told)."""
        before = _alarms(session_factory)
        told.changes.clear()
        ingestor.ingest([Message(topic, data, utc_now()) for topic, data in messages])
        after = _alarms(session_factory)
        changed = {(str(row[0]), str(row[1])) for alarm_id, row in after.items() if before.get(alarm_id) != row}
        alarms = {(c.device_id, c.case_no) for c in told.changes if c.what == "alarm"}
        return changed, alarms

    return step


def test_every_alarm_the_ingest_touches_is_told_to_the_live_bus(
    session_factory: SessionFactory,
    ingest: Step,
) -> None:
    a, b = SimulatedSeal("seal-a", CASE_A), SimulatedSeal("seal-b", CASE_B)
    register(session_factory, a, b)
    forger = SimulatedSeal("seal-b", CASE_B)  # seal-b's account, another key: every event a bad_signature
    steps = {
        "intrusion opens": [(a.event_topic, a.event(EventType.INTRUSION, {"armed": True, "warning": "played"}))],
        "intrusion folds": [(a.event_topic, a.event(EventType.INTRUSION, {"armed": True, "warning": "played"}))],
        "tamper": [(a.event_topic, a.event(EventType.TAMPER, {"armed": True, "warning": "played"}))],
        "camera_blind": [(a.event_topic, a.event(EventType.CAMERA_BLIND))],
        "camera_recovered closes": [(a.event_topic, a.event(EventType.CAMERA_RECOVERED))],
        "outbox_full": [(a.event_topic, a.event(EventType.OUTBOX_FULL))],
        "clock_unsynced": [(a.event_topic, a.event(EventType.HEARTBEAT, {"clock": {"synced": False}}))],
        "speaker_failed": [(a.event_topic, a.event(EventType.HEARTBEAT, {"speaker": "failed"}))],
        "offline status": [(a.status_topic, encode_status(SealStatus.OFFLINE))],
        "an event closes offline": [(a.event_topic, a.event(EventType.HEARTBEAT, {"speaker": "ok"}))],
        # seal-b configured with a mistyped case number: its heartbeat raises case_mismatch in CASE_B (refused:
        # wrong_case, no case), and its intrusion folds into it, which then alerts (the review's finding).
        "case_mismatch": [(b.event_topic, b.event(EventType.HEARTBEAT, case_no=MISTYPED))],
        "intrusion under a mistyped number": [
            (b.event_topic, b.event(EventType.INTRUSION, {"armed": True, "warning": "played"}, case_no=MISTYPED))
        ],
        "refusal_flood": [(forger.event_topic, forger.event(EventType.HEARTBEAT, seq=n)) for n in range(1, 5)],
    }
    for name, messages in steps.items():
        changed, told = ingest(*messages)
        assert changed, f"{name}: the step changed no alarm (the test does not test what it says)"
        assert changed <= told, f"{name}: alarms changed {sorted(changed)}, the live bus was told {sorted(told)}"


def test_a_gap_s_missing_events_raised_and_closed_in_a_batch_is_told(
    session_factory: SessionFactory,
    ingest: Step,
) -> None:
    a, b = SimulatedSeal("seal-a", CASE_A), SimulatedSeal("seal-b", CASE_B)
    register(session_factory, a, b)
    first, second, third = (a.event(EventType.HEARTBEAT) for _ in range(3))
    for name, messages in {"gap": [first, third], "filled": [second]}.items():
        changed, told = ingest(*[(a.event_topic, data) for data in messages])
        assert changed == {("seal-a", CASE_A)}, name
        assert changed <= told, f"{name}: alarms changed {sorted(changed)}, the live bus was told {sorted(told)}"


def test_an_ingest_worker_s_round_of_due_gaps_tells_the_live_feed(
    broker: PrivateBroker, session_factory: SessionFactory, database_url: str, tmp_path: Path
) -> None:
    """Only ``seal-server ingest`` workers running: the ``missing_events`` a worker's own round raises (a seal that
    fell silent after a gap) reaches the pages of ``seal-server run`` through the live feed. Before, the round's
    alarm was told to nobody: the pages showed it only after a reload."""
    court = make_court(session_factory, tmp_path)
    gapped = Ingestor(session_factory, metrics=IngestMetrics(), snapshot_dir=tmp_path / "s", gap_wait_s=GAP_WAIT_S)
    events = [court.a.event() for _ in range(3)]
    gapped.ingest([message(court.a.event_topic, data) for data in events[::2]])  # 1 and 3: the gap is not due yet
    heard: list[Change] = []
    listener = LiveFeed(server_mqtt_settings(broker, tmp_path), metrics=IngestMetrics(), hub=LiveHub(), role="run")
    listener.on_received = heard.extend
    listener.start()
    settings = make_settings(database_url, tmp_path).model_copy(
        update={"mqtt": server_mqtt_settings(broker, tmp_path).model_copy(update={"gap_wait_s": GAP_WAIT_S})}
    )
    stop = StopFlag()
    worker = threading.Thread(target=run_worker, args=(settings, stop), kwargs={"role": "ingest-1"}, daemon=True)
    try:
        assert listener.wait_subscribed(WAIT_S), "the listening feed did not subscribe"
        worker.start()
        assert wait_until(lambda: [a.kind for a in court.alarms()] == ["missing_events"], WAIT_S), court.alarms()
        assert wait_until(lambda: Change("alarm", "seal-a") in heard, WAIT_S), heard
    finally:
        stop.set()
        worker.join(WAIT_S)
        listener.stop()
    assert not worker.is_alive()
