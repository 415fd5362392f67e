"""The bytes of QoS 1 messages the court holds unstored are bounded, through a real Mosquitto into the running ingest.
Before, only a count bounded them (the broker's 1,000 in flight), each up to a snapshot of 8 MiB: a seal's account
publishing snapshots while the database was away put them all in the court's memory (8 GiB at most: out of memory,
and again after the restart, the session delivering them again). Now paho's thread waits for room past
``QOS1_BACKLOG_BYTES`` held (Mosquitto 2.0.11 does not bound the bytes in flight; from 2.0.13 the generated
``max_inflight_bytes`` does too), the largest snapshot still passing, the bytes are counted, and a batch takes no
more once it holds its budget of bytes."""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from seal_dev.broker import PrivateBroker
from seal_protocol import snapshot_topic
from seal_protocol.topics import MAX_SNAPSHOT_BYTES
from server.core.db import make_engine, make_session_factory
from server.core.metrics import IngestMetrics
from server.ingest.backlog import QOS1_BACKLOG_BYTES, Backlog, Received, footprint
from server.ingest.ingestor import Ingestor
from server.ingest.mqtt import MqttIngest
from server.ingest.results import Message
from server.migrations.run import init_db
from server.seals.broker_config import MAX_INFLIGHT_BYTES
from tests.server.helpers import CASE_A, SimulatedSeal
from tests.server.mqtt_helpers import seal_connection, server_mqtt_settings, wait_for_log
from tests.server.test_mqtt_ingest import WAIT_S, Running

MIB = 1024 * 1024


def until(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def snapshot(device_id: str, size: int) -> tuple[str, bytes]:
    """A message on a snapshot topic of ``size`` bytes (not a picture: refused once the database answers)."""
    payload = os.urandom(16) + b"\0" * (size - 16)
    return snapshot_topic(device_id, hashlib.sha256(payload).hexdigest()), payload


def test_a_message_at_qos_1_waits_for_room_and_is_never_dropped() -> None:
    """The backlog's own rule, on threads: past its bound a message at QoS 1 waits until the worker has stored enough
    (it is taken then, not dropped), one larger than the bound is taken alone, and a stopping ingest waits no more."""
    stopping = threading.Event()
    backlog = Backlog(qos1_bytes=footprint("t", 600) + footprint("t", 300), stopping=stopping)
    first = backlog.received(1, 600, "t")
    assert first is not None
    taken: list[float | None] = []
    waiting = threading.Thread(target=lambda: taken.append(backlog.received(1, 400, "t")))
    waiting.start()
    waiting.join(0.5)
    assert waiting.is_alive() and taken == []  # no room: waits
    backlog.stored([_held(first, 600)])
    waiting.join(5)
    [second] = taken
    assert second is not None and backlog.progress().unstored_bytes == footprint("t", 400)
    backlog.stored([_held(second, 400)])
    assert backlog.received(1, 10_000, "t") is not None  # larger than the bound, and nothing else held: taken
    stopping.set()
    assert backlog.received(1, 10_000, "t") is not None  # (at once: the ingest stops, the broker sends it again)
    assert backlog.progress().unstored == 2


def _held(at: float, size: int) -> Received:
    """The message of ``size`` bytes on topic ``t`` the backlog took at ``at``, as the worker stores it."""
    return Received(0, 0, 1, Message("t", bytes(size), datetime.now(UTC)), at)


def test_the_court_holds_no_more_bytes_than_its_bound_while_it_cannot_store(
    broker: PrivateBroker, tmp_path: Path
) -> None:
    """The court's own configuration: one snapshot of the largest size and 39 of 4 MiB (164 MiB) while the database
    has no tables (the reviewer's case). The court holds the largest, and no more than its bound, counted in its
    progress; once the database answers, every one of them comes (refused: not pictures), none lost."""
    database = make_engine(f"sqlite:///{tmp_path / 'not-yet.db'}")  # no tables yet: storing fails and is retried
    factory = make_session_factory(database)
    seal = SimulatedSeal("seal-a", CASE_A)
    metrics = IngestMetrics()
    ingest = MqttIngest(
        server_mqtt_settings(broker, tmp_path), Ingestor(factory, metrics=metrics, snapshot_dir=tmp_path)
    )
    messages = [snapshot(seal.device_id, MAX_SNAPSHOT_BYTES), *(snapshot(seal.device_id, 4 * MIB) for _ in range(39))]
    largest = max(footprint(topic, len(payload)) for topic, payload in messages)
    ingest.start()
    try:
        assert ingest.wait_subscribed(WAIT_S)
        with seal_connection(broker, seal.device_id) as conn:
            for topic, payload in messages:
                conn.publish(topic, payload, timeout=WAIT_S)
            # (before, every one of them came: 164 MiB)
            assert not until(lambda: ingest.progress().unstored_bytes > QOS1_BACKLOG_BYTES, 3)
            held = ingest.progress()
            assert held.state == "retrying"
            assert 2 <= held.unstored < len(messages)  # the largest came, and others with it
            assert held.unstored_bytes >= min(MAX_INFLIGHT_BYTES, QOS1_BACKLOG_BYTES) - largest
            init_db(database)  # the database answers
            Running(ingest, metrics).wait(lambda m: m.rejected_total >= len(messages), "every message")
            assert until(lambda: ingest.progress().unstored == 0, WAIT_S)
    finally:
        ingest.stop()
        database.dispose()
    assert metrics.snapshot().rejected_total == len(messages)
    assert ingest.progress().unstored_bytes == 0


@pytest.mark.parametrize(("sizes_mib", "first_batch"), [((3, 3, 3, 3), 2), ((6, 3, 3, 3), 1)])
def test_a_batch_takes_no_more_once_it_holds_its_bytes(
    broker: PrivateBroker,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    sizes_mib: tuple[int, ...],
    first_batch: int,
) -> None:
    """A budget of 5 MiB: a batch of 3 MiB messages stops at the second (it holds the budget), one message larger
    than the budget is a batch of its own; with a linger of a second every message has arrived as the batch is taken
    (before, a batch took all four)."""
    database = make_engine(f"sqlite:///{tmp_path / 'not-yet.db'}")  # no tables: the first batch is retried, logged
    settings = server_mqtt_settings(broker, tmp_path).model_copy(update={"batch_linger_ms": 1000})
    seal = SimulatedSeal("seal-a", CASE_A)
    ingestor = Ingestor(make_session_factory(database), metrics=IngestMetrics(), snapshot_dir=tmp_path)
    ingest = MqttIngest(settings, ingestor, batch_bytes=5 * MIB)
    caplog.set_level(logging.INFO, logger="server.ingest")
    ingest.start()
    try:
        assert ingest.wait_subscribed(WAIT_S)
        with seal_connection(broker, seal.device_id) as conn:
            for size in sizes_mib:
                conn.publish(*snapshot(seal.device_id, size * MIB), timeout=WAIT_S)
            assert wait_for_log(caplog, lambda r: r.getMessage().startswith("cannot store"), WAIT_S)
            assert until(lambda: ingest.progress().unstored == len(sizes_mib), WAIT_S)
    finally:
        ingest.stop()
        database.dispose()
    tries = {r.getMessage().split(",")[0] for r in caplog.records if r.getMessage().startswith("cannot store")}
    assert tries == {f"cannot store {first_batch} messages"}
