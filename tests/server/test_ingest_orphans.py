"""``seal-server ingest --workers 2`` whose parent process is killed (``kill -9``, the OOM killer, a supervisor that
kills the main process only): its workers stop as on SIGTERM, after the batch in hand, instead of running on adopted
by PID 1 (connected, with client ids that a restarted command's workers would take from them in turn, and they back).
What they had not stored is not lost: the broker hands it to the restarted workers' sessions."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, func, select, text

from seal_dev.broker import PrivateBroker
from server.core.db import SessionFactory
from server.ingest.models import QuarantinedMessage
from tests.agent.helpers import wait_until
from tests.server.helpers import CASE_A, SimulatedSeal, register
from tests.server.ingest_processes import (
    WAIT_S,
    ProcessOutput,
    first_event_stored,
    group_pids,
    ingest_config,
    start_ingest,
    stopping,
    stored_seqs,
)
from tests.server.mqtt_helpers import seal_connection

EVENTS = 20


def test_workers_whose_parent_is_killed_stop_and_lose_nothing(
    broker: PrivateBroker, database_url: str, engine: Engine, session_factory: SessionFactory, tmp_path: Path
) -> None:
    seal = SimulatedSeal("seal-a", CASE_A)
    register(session_factory, seal)
    config = ingest_config(tmp_path / "server.toml", database_url, broker, group="court")
    process = start_ingest(config, 2)
    output = ProcessOutput(process)
    with stopping(process), seal_connection(broker, seal.device_id) as conn:
        # a message published before a worker subscribed goes nowhere
        connected = lambda: output.count("connected to the broker (session present") == 2  # noqa: E731
        assert wait_until(connected, WAIT_S), f"the workers did not connect: {output.lines}"
        assert first_event_stored(conn, seal, session_factory, each_s=5, within_s=WAIT_S), output.lines
        group = group_pids(process.pid)
        assert len(group) >= 3, group  # the parent and its two workers (and multiprocessing's resource tracker)
        with writes_held(engine, seal.device_id):  # what the workers take now is in their hands, not stored
            sent = [conn.client.publish(seal.event_topic, seal.event(), qos=1) for _ in range(EVENTS - 1)]
            for info in sent:
                info.wait_for_publish(WAIT_S)
            os.kill(process.pid, signal.SIGKILL)
            process.wait(WAIT_S)
        # Before: the workers ran on (and their resource tracker, which waits for them), adopted by PID 1.
        assert wait_until(lambda: not group_pids(process.pid), WAIT_S), (group_pids(process.pid), output.lines)
    # The workers stored what they held once the lock went (all of it, or part: the rest stayed with the broker)
    restarted = start_ingest(config, 2)
    again = ProcessOutput(restarted)
    with stopping(restarted):
        assert wait_until(lambda: again.count("connected to the broker (session present") == 2, WAIT_S), again.lines
        assert wait_until(lambda: len(stored_seqs(session_factory)) == EVENTS, WAIT_S), (
            stored_seqs(session_factory),
            again.lines,
        )
    assert restarted.returncode == 0, again.text()
    assert stored_seqs(session_factory) == list(range(1, EVENTS + 1))
    with session_factory() as session:
        assert session.scalar(select(func.count()).select_from(QuarantinedMessage)) == 0


@contextmanager
def writes_held(engine: Engine, device_id: str) -> Iterator[None]:
    """The seal's events cannot be stored while in the block: SQLite's write lock (``BEGIN IMMEDIATE``, which the
    ingest's transactions wait for), PostgreSQL's lock of the seal's ``chain_state`` row (which they take first)."""
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            conn.execute(text("SELECT 1"))
        else:
            conn.execute(text("SELECT 1 FROM chain_state WHERE device_id = :d FOR UPDATE"), {"d": device_id})
        yield
        conn.rollback()
