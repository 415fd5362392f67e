"""The server's one MQTT client factory, against a real Mosquitto that is not there at first and then comes up."""

from __future__ import annotations

import logging
import secrets
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from seal_dev.broker import PrivateBroker
from server.core.mqtt import RECONNECT_MAX_S, RefusedLog, connect_in_background, make_client
from server.seals.broker_files import SERVER_USERNAME
from tests.server.mqtt_helpers import server_mqtt_settings


def test_an_unreachable_broker_is_a_warning_with_its_address_and_a_broker_that_comes_up_is_used_within_seconds(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    broker = PrivateBroker(tmp_path / "broker", {SERVER_USERNAME: secrets.token_urlsafe(16)})  # not started yet
    settings = server_mqtt_settings(broker, tmp_path)
    connected = threading.Event()

    def on_connect(_client: Any, _userdata: Any, _flags: Any, reason_code: Any, _props: Any) -> None:
        if not reason_code.is_failure:
            connected.set()

    client = make_client(settings, role="test")
    client.on_connect = on_connect
    with caplog.at_level(logging.WARNING, logger="server.core.mqtt"):
        connect_in_background(client, settings, persistent=False)
        try:
            assert not connected.wait(RECONNECT_MAX_S + 1)  # several attempts fail meanwhile
            warnings = [r.getMessage() for r in caplog.records if r.name == "server.core.mqtt"]
            assert len(warnings) == 1, warnings  # once, not once per attempt
            assert f"127.0.0.1:{broker.port}" in warnings[0] and "refused" in warnings[0].lower()
            broker.start()
            try:
                assert connected.wait(RECONNECT_MAX_S + 20)  # the back-off is capped: within seconds, not minutes
            finally:
                client.disconnect()
                broker.stop()
        finally:
            client.loop_stop()


def test_a_refused_connection_is_one_error_with_the_address_and_the_account_and_its_end_is_told(
    tmp_path: Path, broker: PrivateBroker, caplog: pytest.LogCaptureFixture
) -> None:
    """Wired as the ingest and the dispatcher wire it: ``on_connect`` hands a refusal to :class:`RefusedLog`."""
    settings = server_mqtt_settings(broker, tmp_path, password="not-the-password")
    refused_log = RefusedLog(settings, "test")
    attempts: list[float] = []
    connected = threading.Event()

    def on_connect(_client: Any, _userdata: Any, _flags: Any, reason_code: Any, _props: Any) -> None:
        if reason_code.is_failure:
            attempts.append(time.monotonic())
            refused_log.refused(reason_code)
        else:
            refused_log.accepted()
            connected.set()

    client = make_client(settings, role="test")
    client.on_connect = on_connect
    with caplog.at_level(logging.INFO, logger="server.core.mqtt"):
        connect_in_background(client, settings, persistent=False)
        try:
            deadline = time.monotonic() + 45
            while len(attempts) < 3 and time.monotonic() < deadline:
                time.sleep(0.1)
            assert len(attempts) >= 3, attempts  # paho retries every few seconds
            errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
            assert len(errors) == 1, errors  # once (a minute), not once per attempt
            assert f"127.0.0.1:{broker.port}" in errors[0]
            assert SERVER_USERNAME in errors[0] and "Not authorized" in errors[0]
        finally:
            client.disconnect()
            client.loop_stop()
    # The broker learns the password that was tried: the same client, retrying, is accepted and says so.
    broker.add_user(SERVER_USERNAME, "not-the-password")
    broker.reload()
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="server.core.mqtt"):
        connect_in_background(client, settings, persistent=False)
        try:
            assert connected.wait(RECONNECT_MAX_S + 5)
            assert any("accepts the connection again" in r.getMessage() for r in caplog.records)
        finally:
            client.disconnect()
            client.loop_stop()
