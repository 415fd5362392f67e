"""The command dispatcher against a real Mosquitto: it publishes from the database, records only what the broker
accepted (never as delivered), retries what nobody would receive, keeps a seal's commands in order, expires."""

from __future__ import annotations

import secrets
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from sqlalchemy import select

from seal_dev.broker import PrivateBroker
from seal_protocol import cmd_topic
from seal_protocol.commands import CommandAction
from seal_protocol.signing import generate_signing_key
from server.auth.access import Role
from server.auth.users import get_user
from server.commands.dispatcher import CommandDispatcher
from server.commands.models import CourtCommand
from server.commands.service import issue_command
from server.config import CommandSettings, MqttSettings
from server.core.base import utc_now
from server.core.db import SessionFactory, session_scope
from server.core.metrics import IngestMetrics
from server.seals.broker_files import SERVER_USERNAME
from server.seals.models import Seal
from tests.agent.helpers import wait_until
from tests.server.auth_helpers import add_user
from tests.server.helpers import CASE_A, SimulatedSeal, register

DEVICE = "seal-a"


class SealInbox:
    """The seal's side: its own account, a persistent session, subscribed to its cmd topic at QoS 1."""

    def __init__(self, broker: PrivateBroker, device_id: str = DEVICE) -> None:
        self.received: list[bytes] = []
        self._cond = threading.Condition()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=device_id, protocol=mqtt.MQTTv5)
        self.client.username_pw_set(device_id, broker.users[device_id])
        self.client.on_connect = lambda c, *_: c.subscribe(cmd_topic(device_id), qos=1)
        self.client.on_subscribe = lambda *_: self._subscribed.set()
        self.client.on_message = self._on_message
        self.port = broker.port

    def connect(self) -> SealInbox:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        self.client.connect("127.0.0.1", self.port, clean_start=False, properties=props)
        self.client.loop_start()
        assert self._subscribed.wait(30)
        return self

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def _on_message(self, _client: Any, _userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with self._cond:
            self.received.append(bytes(msg.payload))
            self._cond.notify_all()

    def wait_for(self, count: int, timeout: float = 10) -> list[bytes]:
        with self._cond:
            assert self._cond.wait_for(lambda: len(self.received) >= count, timeout), self.received
            return list(self.received)


@pytest.fixture
def seal_broker(broker: PrivateBroker, session_factory: SessionFactory) -> PrivateBroker:
    broker.add_user(DEVICE, secrets.token_urlsafe(12))
    broker.reload()
    register(session_factory, SimulatedSeal(DEVICE, CASE_A))
    add_user(session_factory, "judge", Role.JUDGE, (CASE_A,))
    return broker


@pytest.fixture
def dispatcher(seal_broker: PrivateBroker, session_factory: SessionFactory, tmp_path: Path) -> Iterator[Any]:
    (tmp_path / "server-password").write_text(seal_broker.users[SERVER_USERNAME] + "\n")
    mqtt_settings = MqttSettings(port=seal_broker.port, password_file=tmp_path / "server-password")
    instance = CommandDispatcher(
        mqtt_settings,
        CommandSettings(retry_interval_s=0.1, publish_timeout_s=5),
        session_factory,
        metrics=IngestMetrics(),
    )
    yield instance
    instance.stop()


def issue(session_factory: SessionFactory, action: CommandAction = CommandAction.PING, ttl_s: float = 600) -> int:
    with session_scope(session_factory) as session:
        seal = session.scalars(select(Seal).where(Seal.device_id == DEVICE)).one()
        row = issue_command(
            session,
            seal=seal,
            action=action,
            args={},
            key=generate_signing_key(),
            ttl=timedelta(seconds=ttl_s),
            user=get_user(session, username="judge"),
            now=utc_now(),
        )
        return row.id


def row(session_factory: SessionFactory, command_id: int) -> CourtCommand:
    with session_factory() as session:
        found = session.get(CourtCommand, command_id)
        assert found is not None
        return found


def test_published_means_accepted_by_the_broker_not_delivered(
    seal_broker: PrivateBroker, dispatcher: CommandDispatcher, session_factory: SessionFactory
) -> None:
    inbox = SealInbox(seal_broker).connect()
    inbox.close()  # the seal goes offline; its session (and subscription) stays with the broker
    first, second = issue(session_factory), issue(session_factory, CommandAction.DISARM)
    dispatcher.start()
    assert wait_until(lambda: row(session_factory, second).broker_accepted_at is not None, 10)
    for command_id in (first, second):
        published = row(session_factory, command_id)
        assert (published.state, published.publish_attempts, published.publish_error) == ("pending", 1, None)
    inbox = SealInbox(seal_broker).connect()  # back online: the broker hands over what it kept, in order
    try:
        assert inbox.wait_for(2) == [row(session_factory, first).signed, row(session_factory, second).signed]
    finally:
        inbox.close()
    assert row(session_factory, second).state == "pending"  # only the seal's answer changes that


def test_nobody_to_receive_it_is_retried_in_order_until_the_seal_appears(
    seal_broker: PrivateBroker, dispatcher: CommandDispatcher, session_factory: SessionFactory
) -> None:
    first, second = issue(session_factory), issue(session_factory)
    dispatcher.start()
    assert wait_until(lambda: row(session_factory, first).publish_attempts >= 2, 10)
    unsent = row(session_factory, first)
    assert unsent.broker_accepted_at is None and "no subscriber" in (unsent.publish_error or "")
    assert row(session_factory, second).publish_attempts == 0  # held back behind the lower id
    inbox = SealInbox(seal_broker).connect()
    try:
        assert inbox.wait_for(2, timeout=10)[:2] == [unsent.signed, row(session_factory, second).signed]
    finally:
        inbox.close()
    assert wait_until(lambda: row(session_factory, second).broker_accepted_at is not None, 10)


def test_the_broker_down_then_back(
    seal_broker: PrivateBroker, dispatcher: CommandDispatcher, session_factory: SessionFactory
) -> None:
    SealInbox(seal_broker).connect().close()
    seal_broker.stop()
    dispatcher.start()
    command_id = issue(session_factory)
    dispatcher.wake()
    assert not dispatcher.wait_connected(1.0)
    dispatcher.run_round()
    assert row(session_factory, command_id).publish_attempts == 0
    seal_broker.start()
    assert wait_until(lambda: row(session_factory, command_id).broker_accepted_at is not None, 40)
    assert row(session_factory, command_id).state == "pending"


def test_unanswered_commands_expire_and_are_counted(
    seal_broker: PrivateBroker,
    dispatcher: CommandDispatcher,
    session_factory: SessionFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    short, long = issue(session_factory, ttl_s=60), issue(session_factory)
    done = dispatcher.run_round()  # not connected: expiry still runs
    assert done.expired == [] and done.published == {}
    monkeypatch.setattr(dispatcher, "_clock", lambda: utc_now() + timedelta(seconds=61))  # the rounds a minute later
    assert dispatcher.run_round().expired == [short]
    assert (row(session_factory, short).state, row(session_factory, long).state) == ("expired", "pending")
    assert dispatcher.run_round().expired == []
