"""A seal's account may retain only its status: whatever it retains on its event or snapshot topics the ingest
clears from the real Mosquitto (court configuration and ACL), records (log line, metric) and handles as any other
message. Found by a review: one account kept 40 retained messages of 8 MiB on ``snapshot/x0``…``x39`` (the broker
grew from 8 to 336 MiB, kept them through restarts and handed them all to every new court subscription)."""

from __future__ import annotations

import hashlib
import logging
import os
import re
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions
from sqlalchemy import func, select

from seal_dev.broker import PrivateBroker
from seal_protocol import encode_status, snapshot_topic
from seal_protocol.status import SealStatus
from server.core.db import SessionFactory
from server.evidence.models import Event
from server.ingest.models import QuarantinedMessage
from server.marks.marks import MARK_TOPIC_ROOT
from server.seals.broker_files import SERVER_USERNAME, acl_text
from tests.server.helpers import CASE_A, SimulatedSeal, jpeg_bytes, register
from tests.server.mqtt_helpers import seal_connection, server_mqtt_settings, wait_for_log
from tests.server.test_mqtt_ingest import WAIT_S, Running, start_ingest

MIB = 1024 * 1024
SEAL_TOPICS = ("seal/v1/+/event", "seal/v1/+/snapshot/+", "seal/v1/+/status")


@pytest.fixture
def seal(session_factory: SessionFactory) -> SimulatedSeal:
    a = SimulatedSeal("seal-a", CASE_A)
    register(session_factory, a)
    return a


@contextmanager
def court_ingest(
    broker: PrivateBroker, session_factory: SessionFactory, tmp_path: Path, **update: object
) -> Iterator[Running]:
    settings = server_mqtt_settings(broker, tmp_path).model_copy(update=update)
    run = start_ingest(settings, session_factory, tmp_path)
    try:
        yield run
    finally:
        run.ingest.stop()


def retained_now(broker: PrivateBroker, topics: tuple[str, ...] = SEAL_TOPICS) -> list[tuple[str, int]]:
    """What the broker holds retained on every seal's topics: what a new subscription of the court's account gets
    (topic, payload size). It subscribes (a clean session), then publishes a sentinel to itself: the broker sends the
    retained messages as it grants the subscription, so all of them come before the sentinel."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"probe-{secrets.token_hex(4)}", protocol=mqtt.MQTTv5)
    client.username_pw_set(SERVER_USERNAME, broker.users[SERVER_USERNAME])
    sentinel = f"{MARK_TOPIC_ROOT}/probe-{secrets.token_hex(4)}"
    got: list[tuple[str, int]] = []
    subscribed, done = threading.Event(), threading.Event()

    def on_message(_c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        if msg.topic == sentinel:
            done.set()
        elif msg.retain:
            got.append((msg.topic, len(msg.payload)))

    def on_connect(c: mqtt.Client, _u: object, _f: object, rc: ReasonCode, _p: object) -> None:
        assert not rc.is_failure, rc
        c.subscribe([(t, SubscribeOptions(qos=1)) for t in (*topics, sentinel)])

    client.on_message = on_message
    client.on_connect = on_connect
    client.on_subscribe = lambda *_a: subscribed.set()
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    try:
        assert subscribed.wait(WAIT_S), "the probe was not subscribed"
        client.publish(sentinel, b"end", qos=1)
        assert done.wait(WAIT_S), "the probe's sentinel did not come back"
    finally:
        client.disconnect()
        client.loop_stop()
    return sorted(got)


@pytest.mark.parametrize("shared_group", [None, "court-ingest"])
def test_what_a_seal_retains_on_its_event_and_snapshot_topics_is_cleared_recorded_and_handled(
    broker: PrivateBroker,
    seal: SimulatedSeal,
    session_factory: SessionFactory,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    shared_group: str | None,
) -> None:
    caplog.set_level(logging.INFO, logger="server.ingest")
    junk = [f"seal/v1/seal-a/snapshot/x{i}" for i in range(5)]
    with court_ingest(broker, session_factory, tmp_path, shared_group=shared_group) as run:
        with seal_connection(broker, seal.device_id) as conn:
            conn.publish(seal.status_topic, encode_status(SealStatus.ONLINE), retain=True)
            for topic in junk:
                conn.publish(topic, os.urandom(MIB), retain=True)
            conn.publish(seal.event_topic, b"not an event", retain=True)
            conn.publish(seal.event_topic, seal.event(), retain=True)  # a valid event, retained
            snap = run.wait(
                lambda m: m.stored >= 1 and m.rejected_total >= 6 and m.ignored >= 7 and m.status_updates >= 1,
                "the messages handled and the clears' echoes seen",
            )
        assert run.metrics.retained_cleared() == {"cleared": 7}
    assert snap.stored == 1 and snap.duplicates == 0  # the valid event: stored once
    assert snap.rejected == {"invalid_topic": 5, "invalid_json": 1}  # the others quarantined, each once (not echoes)
    assert snap.ignored == 7  # the broker's word of each deletion, acknowledged with nothing to store
    with session_factory() as session:
        assert session.scalar(select(func.count()).select_from(Event)) == 1
        assert session.scalar(select(func.count()).select_from(QuarantinedMessage)) == 6
    cleared = [r for r in caplog.records if r.levelno == logging.WARNING and "retained message" in r.getMessage()]
    assert sorted(str(r.args[1]) for r in cleared) == sorted([*junk, seal.event_topic, seal.event_topic])  # type: ignore[index]

    # Only the seal's status stays retained, and it stays so when the broker restarts (its persistence file).
    status = [(seal.status_topic, len(encode_status(SealStatus.ONLINE)))]
    assert retained_now(broker) == status
    broker.stop()
    broker.start()
    assert retained_now(broker) == status


def test_retained_messages_from_before_are_cleared_when_the_ingest_subscribes_again(
    broker: PrivateBroker, seal: SimulatedSeal, session_factory: SessionFactory, tmp_path: Path
) -> None:
    """Left while the court was away (or by a court of an older version): the ingest's session already holds its
    subscriptions, and it asks for the retained messages again as it subscribes at each connection. (Those sent
    while it was away come twice, queued in its session and retained: the second copy is a duplicate.)"""
    with court_ingest(broker, session_factory, tmp_path):
        pass  # the court's persistent session and its subscriptions exist
    with seal_connection(broker, seal.device_id) as conn:
        conn.publish("seal/v1/seal-a/snapshot/left", b"x" * 1000, retain=True)
        conn.publish(seal.event_topic, seal.event(), retain=True)
    with court_ingest(broker, session_factory, tmp_path) as run:
        snap = run.wait(
            lambda m: m.stored >= 1 and m.ignored >= 2 and run.metrics.retained_cleared().get("cleared", 0) >= 2,
            "the messages and the clears",
        )
    assert snap.stored == 1 and set(snap.rejected) == {"invalid_topic"}
    assert retained_now(broker) == []


def test_a_broker_that_refuses_the_clear_is_reported(
    broker: PrivateBroker,
    seal: SimulatedSeal,
    session_factory: SessionFactory,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An ACL from before the clearing (the court's account may not write seals' topics): said, counted, and the
    message is still handled."""
    with seal_connection(broker, seal.device_id) as conn:
        broker.manage_accounts = False  # the seal's account exists; now the old ACL
        old = acl_text().replace("topic readwrite seal/v1/+/event", "topic read seal/v1/+/event")
        broker.acl_file.write_text(
            old.replace("topic readwrite seal/v1/+/snapshot/+", "topic read seal/v1/+/snapshot/+")
        )
        broker.reload()
        with court_ingest(broker, session_factory, tmp_path) as run:
            conn.publish(seal.event_topic, event := seal.event(), retain=True)
            run.wait(lambda m: m.stored >= 1, "the event")
            assert run.metrics.wait_until(lambda _m: run.metrics.retained_cleared() == {"refused": 1}, WAIT_S)
    assert wait_for_log(caplog, lambda r: "seal-server broker write-files" in r.getMessage(), WAIT_S)
    assert retained_now(broker) == [(seal.event_topic, len(event))]


def test_a_snapshot_published_retained_is_stored_and_cleared(
    broker: PrivateBroker, seal: SimulatedSeal, session_factory: SessionFactory, tmp_path: Path
) -> None:
    picture = jpeg_bytes()
    with court_ingest(broker, session_factory, tmp_path) as run, seal_connection(broker, seal.device_id) as conn:
        conn.publish(snapshot_topic(seal.device_id, hashlib.sha256(picture).hexdigest()), picture, retain=True)
        snap = run.wait(lambda m: m.snapshots >= 1 and m.ignored >= 1, "the snapshot")
    assert snap.rejected == {}
    assert retained_now(broker) == []


def test_a_retained_message_is_cleared_by_one_function() -> None:
    """The empty retained publish that deletes a retained message is written once (``server.core.mqtt``), for the
    ingest's clears and the command publisher's sweep alike: no copy of it drifts from the other."""
    root = Path(__file__).resolve().parents[2]
    clearing = re.compile(r"""\.publish\([^)]*b["']{2}[^)]*retain=True""")
    found = [
        str(path.relative_to(root))
        for path in sorted((root / "server").rglob("*.py"))
        if clearing.search(path.read_text(encoding="utf-8"))
    ]
    assert found == ["server/core/mqtt.py"]
