"""MQTT client ids: stable for an account, unguessable without its password."""

from __future__ import annotations

from seal_protocol.transport import mqtt_client_id


def test_the_client_id_is_stable_and_needs_the_password() -> None:
    first = mqtt_client_id("seal-a", "password-of-seal-a")
    assert first == mqtt_client_id("seal-a", "password-of-seal-a")  # the persistent session survives restarts
    assert first.startswith("seal-a-") and len(first) == len("seal-a-") + 16
    assert first != mqtt_client_id("seal-a", "another password")
    assert mqtt_client_id("seal-b", "password-of-seal-a") != first
