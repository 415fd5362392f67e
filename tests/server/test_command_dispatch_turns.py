"""The dispatcher against a real Mosquitto, at the edges of a round: a command withdrawn after the round read it is
not published; seals nobody receives take turns and hold up no other seal's commands."""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from seal_dev.broker import PrivateBroker
from seal_protocol.commands import CommandAction
from seal_protocol.signing import generate_signing_key
from server.app import create_app
from server.auth.users import get_user
from server.commands.dispatcher import CommandDispatcher
from server.commands.service import issue_command
from server.config import CommandSettings, MqttSettings
from server.core.base import utc_now
from server.core.db import SessionFactory, session_scope
from server.core.metrics import IngestMetrics
from server.seals.broker_files import SERVER_USERNAME
from server.seals.models import Seal
from tests.agent.helpers import wait_until
from tests.server.auth_helpers import make_settings
from tests.server.helpers import CASE_B, SimulatedSeal, register
from tests.server.removal_world import make_world
from tests.server.test_command_dispatcher import DEVICE, SealInbox, row, seal_broker  # noqa: F401  (a fixture)

KEY = generate_signing_key()


class Clock:
    """The dispatcher's clock; ``then`` runs (once, on the dispatcher's thread) at the ``at``-th call from now."""

    def __init__(self) -> None:
        self.calls = 0
        self._then: tuple[int, Callable[[], None]] | None = None

    def __call__(self) -> datetime:
        self.calls += 1
        if self._then is not None and self.calls == self._then[0]:
            self._then[1]()
        return utc_now()

    def then(self, at: int, work: Callable[[], None]) -> None:
        self._then = (self.calls + at, work)


def idle_dispatcher(
    broker: PrivateBroker, session_factory: SessionFactory, tmp_path: Path, clock: Clock, **settings: int
) -> CommandDispatcher:
    """A dispatcher connected to ``broker`` whose rounds run only when the test calls them (after the two its start
    and its connection run at once)."""
    (tmp_path / "server-password").write_text(broker.users[SERVER_USERNAME] + "\n")
    dispatcher = CommandDispatcher(
        MqttSettings(port=broker.port, password_file=tmp_path / "server-password"),
        CommandSettings(retry_interval_s=3600, publish_timeout_s=5, **settings),
        session_factory,
        metrics=IngestMetrics(),
        clock=clock,
    )
    dispatcher.start()
    assert dispatcher.wait_connected(10)
    assert wait_until(lambda: clock.calls >= 2, 10)
    time.sleep(0.3)  # the connection's round ends (it had nothing to publish)
    return dispatcher


def issue(session_factory: SessionFactory, device_id: str, action: CommandAction) -> int:
    with session_scope(session_factory) as session:
        seal = session.scalars(select(Seal).where(Seal.device_id == device_id)).one()
        user = get_user(session, username="judge")
        ttl = timedelta(minutes=10)
        return issue_command(session, seal=seal, action=action, args={}, key=KEY, ttl=ttl, user=user, now=utc_now()).id


def test_a_disarm_withdrawn_after_the_round_read_it_is_not_published(
    database_url: str, session_factory: SessionFactory, tmp_path: Path, broker: PrivateBroker
) -> None:
    """The round reads both seals' disarms; the judge withdraws the approval while it publishes the first: the
    second seal gets the arm only — a disarm it would carry out (signed, unexpired, its case) never reaches it."""
    for device_id in ("seal-a1", "seal-a2"):
        broker.add_user(device_id, secrets.token_urlsafe(12))
    broker.reload()
    clock = Clock()
    with TestClient(create_app(make_settings(database_url, tmp_path), with_ingest=False)) as client:
        world = make_world(session_factory, tmp_path, client)
        inbox = SealInbox(broker, "seal-a2").connect()
        dispatcher = idle_dispatcher(broker, session_factory, tmp_path, clock)
        try:
            request_id = world.filed()
            disarms = world.commands(world.approved(request_id))
            aborted: dict[str, str] = {}

            def abort() -> None:  # another request of the API, committed while the round is under way
                reasons = {"reasons": "撤销准予 / approval withdrawn"}
                worker = threading.Thread(
                    target=lambda: aborted.update(world.ok("judge", request_id, "abort", reasons))
                )
                worker.start()
                worker.join()

            clock.then(2, abort)  # the round's start, then the record of the first publish (seal-a1's disarm)
            first = dispatcher.run_round()
            assert aborted["state"] == "aborted"
            assert disarms["seal-a2"].id not in sum(first.published.values(), [])
            dispatcher.run_round()  # the arms
            [received] = inbox.wait_for(1)
            time.sleep(0.3)
            assert [json.loads(message)["action"] for message in inbox.received] == ["arm"]
            assert json.loads(received)["command_id"] > disarms["seal-a2"].id
            assert first.dropped == [disarms["seal-a2"].id]
        finally:
            dispatcher.stop()
            inbox.close()
    withdrawn = row(session_factory, disarms["seal-a2"].id)
    assert (withdrawn.state, withdrawn.publish_attempts, withdrawn.broker_accepted_at) == ("expired", 0, None)


@pytest.mark.usefixtures("seal_broker")
def test_a_hundred_seals_nobody_receives_do_not_hold_up_an_online_seal(
    broker: PrivateBroker, session_factory: SessionFactory, tmp_path: Path
) -> None:
    """A hundred seals with no broker session, a command each ("no matching subscribers" every round, until they
    expire), then a ping and a disarm to a seal that is online: the second round publishes its commands, in order."""
    dead = [SimulatedSeal(f"dead-{i:03d}", CASE_B) for i in range(100)]
    register(session_factory, *dead)
    inbox = SealInbox(broker).connect()
    dispatcher = idle_dispatcher(broker, session_factory, tmp_path, Clock())
    try:
        for seal in dead:
            issue(session_factory, seal.device_id, CommandAction.PING)
        ping, disarm = (
            issue(session_factory, DEVICE, CommandAction.PING),
            issue(session_factory, DEVICE, CommandAction.DISARM),
        )
        dispatcher.run_round()
        dispatcher.run_round()
        received = inbox.wait_for(2)
    finally:
        dispatcher.stop()
        inbox.close()
    assert [json.loads(message)["command_id"] for message in received] == [ping, disarm]
    assert row(session_factory, disarm).broker_accepted_at is not None


@pytest.mark.usefixtures("seal_broker")
def test_a_backlog_beyond_a_round_takes_turns_and_keeps_each_seal_s_order(
    broker: PrivateBroker, session_factory: SessionFactory, tmp_path: Path
) -> None:
    dead = [SimulatedSeal(f"dead-{i}", CASE_B) for i in range(5)]
    register(session_factory, *dead)
    inbox = SealInbox(broker).connect()
    dispatcher = idle_dispatcher(broker, session_factory, tmp_path, Clock(), seals_per_round=3)
    try:
        pings = [issue(session_factory, seal.device_id, CommandAction.PING) for seal in dead]
        ping, disarm = (
            issue(session_factory, DEVICE, CommandAction.PING),
            issue(session_factory, DEVICE, CommandAction.DISARM),
        )
        rounds = [dispatcher.run_round().published for _ in range(4)]
        received = inbox.wait_for(2)
    finally:
        dispatcher.stop()
        inbox.close()
    assert rounds[0] == {"no_subscriber": pings[:3]}
    assert rounds[1] == {"no_subscriber": pings[3:], "accepted": [ping, disarm]}  # never tried: first in line
    # then those tried least recently: every seal once more before any a third time
    assert rounds[2] == {"no_subscriber": pings[:3]} and rounds[3] == {"no_subscriber": [pings[0], *pings[3:]]}
    assert [json.loads(message)["command_id"] for message in received] == [ping, disarm]
    assert [row(session_factory, command_id).publish_attempts for command_id in pings] == [3, 2, 2, 2, 2]


@pytest.mark.usefixtures("seal_broker")
def test_a_seal_back_after_many_failed_publishes_waits_no_longer_than_the_others(
    broker: PrivateBroker, session_factory: SessionFactory, tmp_path: Path
) -> None:
    """A disarm tried six times while its seal had no session; the seal comes online as six seals nobody receives get
    a command each. Their new commands go first (two rounds of three), then the disarm, tried least recently. It
    was put behind every command that had failed fewer times than it, round after round, until it expired."""
    inbox = SealInbox(broker)
    dispatcher = idle_dispatcher(broker, session_factory, tmp_path, Clock(), seals_per_round=3)
    try:
        disarm = issue(session_factory, DEVICE, CommandAction.DISARM)
        for _ in range(6):
            assert dispatcher.run_round().published == {"no_subscriber": [disarm]}
        inbox.connect()
        dead = [SimulatedSeal(f"dead-{i}", CASE_B) for i in range(6)]
        register(session_factory, *dead)
        pings = [issue(session_factory, seal.device_id, CommandAction.PING) for seal in dead]
        rounds = [dispatcher.run_round().published for _ in range(3)]
        received = inbox.wait_for(1)
    finally:
        dispatcher.stop()
        inbox.close()
    assert rounds[:2] == [{"no_subscriber": pings[:3]}, {"no_subscriber": pings[3:]}]
    assert rounds[2] == {"accepted": [disarm], "no_subscriber": pings[:2]}
    assert [json.loads(message)["command_id"] for message in received] == [disarm]
