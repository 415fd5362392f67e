"""An intrusion or a tamper report does not wait for the ingest's linger: through a real Mosquitto into the running
ingest, with the longest linger the configuration allows. A heartbeat alone is committed no sooner than the linger
(the setting works); one with an intrusion or a tamper report behind it is committed with it at once (before, both
waited the linger: an alarm's row came up to ``batch_linger_ms`` later than it had to)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from seal_dev.broker import PrivateBroker
from seal_protocol import EventType
from server.core.db import SessionFactory
from tests.server.helpers import CASE_A, SimulatedSeal, register
from tests.server.mqtt_helpers import seal_connection, server_mqtt_settings
from tests.server.test_mqtt_ingest import start_ingest

LINGER_S = 1.0  # the most `batch_linger_ms` allows


@pytest.mark.parametrize("alarm", [EventType.INTRUSION, EventType.TAMPER])
def test_an_alarm_cuts_short_the_linger(
    broker: PrivateBroker, session_factory: SessionFactory, tmp_path: Path, alarm: EventType
) -> None:
    seal = SimulatedSeal("seal-a", CASE_A)
    register(session_factory, seal)
    settings = server_mqtt_settings(broker, tmp_path).model_copy(
        update={"batch_linger_ms": LINGER_S * 1000, "mark_interval_s": 60}
    )  # (a marker the worker sends itself would begin a linger of its own before the heartbeat's)
    running = start_ingest(settings, session_factory, tmp_path)
    try:
        with seal_connection(broker, seal.device_id) as conn:
            conn.publish(seal.event_topic, seal.event())  # with the marker the worker sends itself as it starts
            running.wait(lambda m: m.stored >= 1, "the first heartbeat")

            started = time.monotonic()
            conn.publish(seal.event_topic, seal.event())
            conn.publish(seal.event_topic, seal.event(alarm, {"warning": "played"} if alarm == "intrusion" else {}))
            snap = running.wait(lambda m: m.stored + sum(m.rejected.values()) >= 3, "the heartbeat and the alarm")
            assert time.monotonic() - started < LINGER_S  # taken at once, the heartbeat with it
            assert (snap.stored, snap.rejected) == (3, {})

            started = time.monotonic()
            conn.publish(seal.event_topic, seal.event())
            running.wait(lambda m: m.stored >= 4, "the heartbeat alone")
            assert time.monotonic() - started >= LINGER_S  # it waited the linger: the setting works
    finally:
        running.ingest.stop()
