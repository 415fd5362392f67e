"""Crash safety: the ingest, SIGKILLed between receiving and committing (or between committing and acknowledging),
loses nothing and stores nothing twice once it is restarted — the broker redelivers what was not acknowledged.

The ingest runs in a child process (this module, run with ``python -m``): the real :class:`MqttIngest` and
:class:`Ingestor` on the test database, with SQLAlchemy hooks that, once armed, announce the first commit holding
events (an insert into the events table, seen at the driver; by creating a marker file) and then block it forever —
until the test kills the process.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import Connection, Engine, event, func, select
from sqlalchemy.orm import Session

from seal_dev.broker import PrivateBroker
from seal_protocol import EventType, encode_status
from seal_protocol.status import SealStatus
from server.alarms.models import Alarm
from server.config import MqttSettings
from server.core.db import SessionFactory, make_engine, make_session_factory
from server.core.metrics import IngestMetrics
from server.evidence.models import Event
from server.ingest.ingestor import Ingestor
from server.ingest.models import ChainState, QuarantinedMessage
from server.ingest.mqtt import MqttIngest
from server.seals.models import Seal
from tests.server.helpers import CASE_A, SimulatedSeal, register
from tests.server.mqtt_helpers import seal_connection, server_mqtt_settings

REPO = Path(__file__).resolve().parents[2]
WAIT_S = 20.0
BURST = 40


def _wait(predicate: object, what: str, timeout: float = WAIT_S) -> None:
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@contextmanager
def ingest_process(
    database_url: str, mqtt: MqttSettings, directory: Path, hold: str
) -> Iterator[subprocess.Popen[bytes]]:
    """The ingest in a child process; ``hold`` is ``before_commit``, ``after_commit`` or ``none``."""
    args = [
        sys.executable,
        "-m",
        "tests.server.test_crash_ingest",
        database_url,
        mqtt.model_dump_json(),
        str(directory),
        hold,
    ]
    log = (directory / f"child-{hold}.log").open("ab")
    process = subprocess.Popen(args, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(60)
        log.close()


def _status(session_factory: SessionFactory) -> str | None:
    with session_factory() as session:
        return session.scalar(select(Seal.status).where(Seal.device_id == "seal-a"))


def _rows(session_factory: SessionFactory) -> list[int]:
    with session_factory() as session:
        return list(session.scalars(select(Event.seq).where(Event.device_id == "seal-a").order_by(Event.seq)))


@pytest.mark.parametrize("hold", ["before_commit", "after_commit"])
def test_sigkill_during_a_burst_loses_nothing_and_doubles_nothing(
    broker: PrivateBroker, database_url: str, session_factory: SessionFactory, tmp_path: Path, hold: str
) -> None:
    seal = SimulatedSeal("seal-a", CASE_A)
    register(session_factory, seal)
    mqtt = server_mqtt_settings(broker, tmp_path).model_copy(update={"batch_size": 10})
    marker = tmp_path / "holding"
    burst = [seal.event(EventType.INTRUSION if i % 10 == 0 else EventType.HEARTBEAT) for i in range(BURST)]

    with seal_connection(broker, seal.device_id) as conn:
        with ingest_process(database_url, mqtt, tmp_path, hold) as first:
            conn.publish(seal.status_topic, encode_status(SealStatus.ONLINE), retain=True)
            _wait(lambda: _status(session_factory) == "online", "the child to subscribe (it stores the status)")
            for data in burst:
                conn.publish(seal.event_topic, data)  # each one PUBACKed by the broker: the seal forgets it
            _wait(marker.exists, "the child to hold a commit")
            os.kill(first.pid, signal.SIGKILL)
            assert first.wait(60) == -signal.SIGKILL
        held = _rows(session_factory)
        if hold == "before_commit":
            assert held == [], "nothing can be stored before the commit"
        else:
            assert held and held == list(range(1, len(held) + 1)), "the held batch was committed, not acknowledged"

        with ingest_process(database_url, mqtt, tmp_path, "none") as second:
            _wait(lambda: len(_rows(session_factory)) >= BURST, f"{BURST} events after the restart")
            second.send_signal(signal.SIGTERM)
            assert second.wait(60) == 0

    assert _rows(session_factory) == list(range(1, BURST + 1))
    if hold == "after_commit":  # the committed but unacknowledged batch came again, as no-op duplicates
        assert "duplicate from seal/v1/seal-a/event ignored" in (tmp_path / "child-none.log").read_text()
    with session_factory() as session:
        assert session.scalar(select(func.count()).select_from(QuarantinedMessage)) == 0
        chain = session.get(ChainState, "seal-a")
        assert chain is not None and (chain.max_seq, chain.missing) == (BURST, [])
        intrusion = session.scalar(select(Alarm).where(Alarm.kind == "intrusion"))
        assert intrusion is not None and intrusion.count == BURST // 10, "an alarm was counted twice (or lost)"
        assert session.scalar(select(Alarm).where(Alarm.kind == "missing_events", Alarm.state != "closed")) is None


# -- the child ----------------------------------------------------------------------------------------------------


def _hold_commits(engine: Engine, session_factory: SessionFactory, hold: str, marker: Path) -> None:
    """Block forever the first commit that holds events, at ``hold``, after creating ``marker``."""
    forever = threading.Event()

    @event.listens_for(engine, "before_cursor_execute")
    def on_execute(connection: Connection, cursor: object, statement: str, *args: object) -> None:
        # Seen at the driver: on SQLite the batch hands its events to the driver's executemany, not to the session.
        if statement.startswith(f"INSERT INTO {Event.__tablename__} "):
            connection.info["holds_events"] = True

    @event.listens_for(session_factory, "before_commit")
    def before_commit(session: Session) -> None:
        session.flush()
        if session.connection().info.pop("holds_events", False):
            session.info["holds_events"] = True
        if session.info.get("holds_events") and hold == "before_commit":
            marker.touch()
            forever.wait()

    @event.listens_for(session_factory, "after_commit")
    def after_commit(session: Session) -> None:
        if session.info.pop("holds_events", False) and hold == "after_commit":
            marker.touch()
            forever.wait()


def child_main(argv: list[str]) -> int:
    database_url, mqtt_json, directory, hold = argv
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    engine = make_engine(database_url)
    session_factory = make_session_factory(engine)
    if hold != "none":
        _hold_commits(engine, session_factory, hold, Path(directory) / "holding")
    ingestor = Ingestor(session_factory, metrics=IngestMetrics(), snapshot_dir=Path(directory) / "snapshots")
    ingest = MqttIngest(MqttSettings.model_validate(json.loads(mqtt_json)), ingestor)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    ingest.start()
    stop.wait()
    ingest.stop()
    engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(child_main(sys.argv[1:]))
