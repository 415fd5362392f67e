"""``seal-server broker check``: is the court's broker up, does it take the court's account, and can the server
reload it? A pid file says none of this (``mosquitto -d`` that fails on a missing TLS file writes its pid file and
removes it again; one that fails on a missing password file leaves one naming a dead process): the check logs in as
the server does, on the configured listener ([mqtt] host, port, TLS), with a client id of its own and a session that
ends with it, so a running server's connections are not disturbed."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from server.config import Settings
from server.core.mqtt import make_client
from server.errors import BrokerUnavailable
from server.seals.broker_process import NotOurBroker, running_broker

#: How long the broker has to answer the login.
CONNACK_TIMEOUT_S = 10.0
#: With ``--wait``: how often an unreachable broker is tried again.
RETRY_S = 0.2


@dataclass(frozen=True)
class BrokerCheck:
    ok: bool
    lines: list[str]


def check_broker(settings: Settings, *, wait_s: float = 0.0, timeout_s: float = CONNACK_TIMEOUT_S) -> BrokerCheck:
    """Log in to the broker as the court server (trying again for up to ``wait_s`` while it cannot be reached: one
    just started may not listen yet); then look at ``[broker] pid_file``. ``ConfigError`` for a password file that
    cannot be read."""
    mqtt = settings.mqtt
    where = f"{mqtt.host}:{mqtt.port}" + (" (TLS)" if mqtt.tls_ca_file is not None else "")
    deadline = time.monotonic() + wait_s
    while True:
        try:
            refused = _log_in(settings, timeout_s)
            break
        except BrokerUnavailable as exc:
            if time.monotonic() >= deadline:
                return BrokerCheck(False, [f"broker {where}: not running or not reachable ({exc}); see its log"])
            time.sleep(RETRY_S)
    if refused is not None:
        return BrokerCheck(
            False,
            [
                f"broker {where}: refused the account {mqtt.username}: {refused} (`seal-server broker server-account` "
                "creates it with the password in [mqtt] password_file, then reload the broker)"
            ],
        )
    lines = [f"broker {where}: ok, the account {mqtt.username} logged in"]
    pid_file = settings.broker.pid_file
    if pid_file is None:
        return BrokerCheck(True, [*lines, "no [broker] pid_file: reload the broker yourself after each account change"])
    pid = running_broker(pid_file)
    if isinstance(pid, NotOurBroker):
        lines.append(
            f"but {pid.reason}: account changes cannot reload this broker (start it with `mosquitto -c "
            "<court>/mosquitto.conf -d`, or the broker found is not the court's)"
        )
        return BrokerCheck(False, lines)
    return BrokerCheck(True, [*lines, f"pid file {pid_file}: Mosquitto pid {pid}, reloaded at each account change"])


def _log_in(settings: Settings, timeout_s: float) -> str | None:
    """``None`` once the broker accepted the login, else its refusal; :class:`BrokerUnavailable` if none came."""
    mqtt = settings.mqtt
    client = make_client(mqtt, role="check")
    answer: list[ReasonCode] = []
    client.on_connect = lambda _c, _u, _f, rc, _p: answer.append(rc)
    client.on_connect_fail = None
    properties = Properties(PacketTypes.CONNECT)
    properties.SessionExpiryInterval = 0
    try:
        client.connect(mqtt.host, mqtt.port, keepalive=mqtt.keepalive_s, clean_start=True, properties=properties)
    except (OSError, ValueError) as exc:
        raise BrokerUnavailable(str(exc)) from exc
    try:
        deadline = time.monotonic() + timeout_s
        while not answer and time.monotonic() < deadline:
            rc = client.loop(timeout=0.1)
            if rc != MQTTErrorCode.MQTT_ERR_SUCCESS and not answer:
                raise BrokerUnavailable(f"the connection closed before the broker answered ({_error(rc)})")
        if not answer:
            raise BrokerUnavailable(f"no answer within {timeout_s:g} s")
        return None if not answer[0].is_failure else str(answer[0])
    finally:
        client.disconnect()
        client.loop(timeout=0.1)
        _close(client)


def _error(rc: Any) -> str:
    return getattr(rc, "name", str(rc))


def _close(client: Any) -> None:
    sock = client.socket()
    if sock is not None:
        sock.close()
