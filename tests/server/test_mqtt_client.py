"""The server's one MQTT client factory, against a real Mosquitto that is not there at first and then comes up."""

from __future__ import annotations

import logging
import secrets
import threading
from pathlib import Path
from typing import Any

import pytest

from seal_dev.broker import PrivateBroker
from server.core.mqtt import RECONNECT_MAX_S, connect_in_background, make_client
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
                assert connected.wait(RECONNECT_MAX_S + 3)  # the back-off is capped: within seconds
            finally:
                client.disconnect()
                broker.stop()
        finally:
            client.loop_stop()
