"""Baselines measured in the same run as the agent: the bare cost of each step the agent's path is made of."""

from __future__ import annotations

import secrets
import sqlite3
import threading
import time
from pathlib import Path

from bench_support import WARM_UP, FifoSink, Series

from seal_dev.broker import PrivateBroker


def baseline_edge(factory: object, n: int) -> Series:
    """The same gpiozero adapter (``PirSensor``, no bounce filter) whose handler only stamps and sets an Event."""
    from gpiozero.pins.mock import MockFactory

    from seal_agent.devices.pir import PirSensor

    assert isinstance(factory, MockFactory)
    series = Series("baseline: gpiozero edge -> handler sets threading.Event")
    fired = threading.Event()
    stamp = [0.0]

    def handler() -> None:
        stamp[0] = time.perf_counter()
        fired.set()

    pin = factory.pin(5)
    with PirSensor(5, bounce_s=None, pin_factory=factory) as sensor:
        sensor.set_handlers(on_start=handler, on_end=lambda: None)
        for _ in range(n):
            fired.clear()
            t0 = time.perf_counter()
            pin.drive_high()
            assert fired.wait(1)
            series.values.append(stamp[0] - t0)
            pin.drive_low()
    return series


def baseline_sqlite(directory: Path, n: int) -> Series:
    """One row committed the way the outbox commits (WAL, synchronous=FULL, BEGIN IMMEDIATE), same file system."""
    series = Series("baseline: bare SQLite WAL synchronous=FULL commit of one row")
    db = sqlite3.connect(directory / "baseline.sqlite", isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("CREATE TABLE t (seq INTEGER PRIMARY KEY, data BLOB NOT NULL)")
    row = secrets.token_bytes(600)
    for seq in range(1, n + 1):
        t0 = time.perf_counter()
        db.execute("BEGIN IMMEDIATE")
        db.execute("INSERT INTO t VALUES (?, ?)", (seq, row))
        db.execute("COMMIT")
        series.values.append(time.perf_counter() - t0)
    db.close()
    return series


def baseline_play(wav: Path, sink: FifoSink, n: int) -> tuple[Series, Series]:
    """simpleaudio on this thread, no agent: ``play()`` called → it returned, and → first PCM bytes out of ALSA."""
    import simpleaudio

    returned = Series("baseline: bare simpleaudio play() call -> it returned")
    first = Series("baseline: bare simpleaudio play() call -> first PCM bytes")
    sound = simpleaudio.WaveObject.from_wave_file(str(wav))
    for i in range(n + WARM_UP):
        sink.arm()
        t0 = time.perf_counter()
        play = sound.play()
        t1 = time.perf_counter()
        assert sink.first.wait(2), "no PCM bytes came out of ALSA"
        play.wait_done()
        if i >= WARM_UP:
            returned.values.append(t1 - t0)
            first.values.append(sink.first_at - t0)
    return returned, first


def baseline_puback(broker: PrivateBroker, username: str, password: str, n: int) -> Series:
    """A bare paho client (same account, another client id): QoS 1 publish of an event-sized payload → PUBACK."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    from seal_protocol import event_topic

    series = Series("baseline: bare paho QoS1 publish -> PUBACK")
    acked = threading.Event()
    stamp = [0.0]
    connected = threading.Event()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-baseline", protocol=mqtt.MQTTv5)
    client.username_pw_set(username, password)
    client.on_connect = lambda c, u, f, rc, p: connected.set()

    def on_publish(c: object, u: object, mid: int, rc: object, p: object) -> None:
        stamp[0] = time.perf_counter()
        acked.set()

    client.on_publish = on_publish
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    try:
        assert connected.wait(10)
        payload = secrets.token_bytes(480)
        for _ in range(n):
            acked.clear()
            t0 = time.perf_counter()
            client.publish(event_topic(username), payload, qos=1)
            assert acked.wait(5)
            series.values.append(stamp[0] - t0)
    finally:
        client.disconnect()
        client.loop_stop()
    return series
