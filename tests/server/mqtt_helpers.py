"""A seal's MQTT connection for tests: a real paho client logged in with the seal's own broker account."""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from seal_dev.broker import PrivateBroker
from server.config import MqttSettings
from server.seals.broker_files import SERVER_USERNAME


class SealConnection:
    def __init__(self, client: mqtt.Client) -> None:
        self.client = client

    def publish(self, topic: str, payload: bytes, *, retain: bool = False, timeout: float = 5.0) -> None:
        """Publish at QoS 1 and wait for the broker's PUBACK; fail on a refusal."""
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        info.wait_for_publish(timeout)
        assert info.is_published(), f"no PUBACK for {topic} within {timeout} s"
        assert info.rc == mqtt.MQTT_ERR_SUCCESS


def _try_connect(
    port: int, device_id: str, password: str, timeout: float, *, host: str = "127.0.0.1", ca_file: Path | None = None
) -> mqtt.Client | None:
    """A connected client, or ``None`` if the broker refused or did not answer within ``timeout``; over TLS,
    checking the broker's certificate against ``ca_file`` and ``host``, if ``ca_file`` is given."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"{device_id}-test", protocol=mqtt.MQTTv5)
    client.username_pw_set(device_id, password)
    if ca_file is not None:
        client.tls_set(ca_certs=str(ca_file))
    accepted = threading.Event()
    answered = threading.Event()

    def on_connect(_c: mqtt.Client, _u: object, _f: object, rc: ReasonCode, _p: object) -> None:
        if not rc.is_failure:
            accepted.set()
        answered.set()

    client.on_connect = on_connect
    client.connect(host, port)
    client.loop_start()
    answered.wait(timeout)
    if accepted.is_set():
        return client
    client.disconnect()
    client.loop_stop()
    return None


@contextmanager
def seal_connection(broker: PrivateBroker, device_id: str, timeout: float = 10.0) -> Iterator[SealConnection]:
    """Create the seal's broker account and connect with it (retrying while the broker reloads its passwords)."""
    password = secrets.token_urlsafe(12)
    broker.add_user(device_id, password)
    broker.reload()
    with seal_login(broker.port, device_id, password, timeout=timeout) as connection:
        yield connection


@contextmanager
def seal_login(
    port: int,
    device_id: str,
    password: str,
    *,
    host: str = "127.0.0.1",
    ca_file: Path | None = None,
    timeout: float = 10.0,
) -> Iterator[SealConnection]:
    """Log in as the seal with an account it already has, retrying while the broker (re)loads its passwords; over
    TLS if ``ca_file`` is given."""
    deadline = time.monotonic() + timeout
    client = None
    while client is None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"{device_id} could not log in to the broker at {host}:{port} within {timeout} s")
        client = _try_connect(port, device_id, password, remaining, host=host, ca_file=ca_file)
    try:
        yield SealConnection(client)
    finally:
        client.disconnect()
        client.loop_stop()


def server_mqtt_settings(broker: PrivateBroker, directory: Path, *, password: str | None = None) -> MqttSettings:
    """Settings for the court server's account on ``broker``, its password in a file under ``directory``."""
    password_file = directory / "court-server.mqtt-password"
    password_file.write_text((password or broker.users[SERVER_USERNAME]) + "\n")
    return MqttSettings(
        host="127.0.0.1",
        port=broker.port,
        username=SERVER_USERNAME,
        password_file=password_file,
        batch_size=50,
    )


def wait_for_log(
    caplog: pytest.LogCaptureFixture, predicate: Callable[[logging.LogRecord], bool], timeout: float
) -> bool:
    """Wait until a captured log record satisfies ``predicate``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(predicate(record) for record in caplog.records):
            return True
        time.sleep(0.02)
    return False
