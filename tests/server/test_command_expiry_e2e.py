"""The real dispatcher and the real seal agent (MockFactory pins) through a private Mosquitto: a command the court
published while the seal was away expires in the broker with the command, so a seal booted later with its clock
behind never receives it; and what is retained on the seals' ``cmd`` and ``receipt`` topics is cleared."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from seal_dev.broker import PrivateBroker
from seal_protocol import MessageKind, cmd_topic, subscription_all
from seal_protocol.commands import CommandAction
from seal_protocol.topics import receipt_topic
from server.auth.access import Role
from server.auth.users import get_user
from server.commands.dispatcher import CommandDispatcher
from server.commands.service import issue_command
from server.config import CommandSettings, MqttSettings
from server.core.base import utc_now
from server.core.db import SessionFactory, session_scope
from server.core.metrics import IngestMetrics
from server.seals.broker_files import SERVER_USERNAME
from server.seals.models import Seal
from tests.agent import conftest as agent_fixtures
from tests.agent.helpers import COURT_KEY, CourtSubscriber, RuntimeFactory, wait_until, write_config
from tests.agent.test_command_clock import UNSYNCED, BootedBehind
from tests.agent.test_commands import DEVICE, answers, online
from tests.server.auth_helpers import add_user
from tests.server.helpers import CASE_A, SimulatedSeal, register
from tests.server.test_command_dispatcher import row
from tests.server.test_retained_cleared import retained_now

# The agent's fixtures : court, mock_pins, runtimes.
court, mock_pins, runtimes = agent_fixtures.court, agent_fixtures.mock_pins, agent_fixtures.runtimes


@pytest.fixture
def dispatcher(broker: PrivateBroker, session_factory: SessionFactory, tmp_path: Path) -> Iterator[CommandDispatcher]:
    register(session_factory, SimulatedSeal(DEVICE, CASE_A))  # write_config's seal and case
    add_user(session_factory, "judge", Role.JUDGE, (CASE_A,))
    (tmp_path / "server-password").write_text(broker.users[SERVER_USERNAME] + "\n")
    mqtt_settings = MqttSettings(port=broker.port, password_file=tmp_path / "server-password")
    instance = CommandDispatcher(
        mqtt_settings,
        CommandSettings(retry_interval_s=0.1, publish_timeout_s=5),
        session_factory,
        metrics=IngestMetrics(),
    )
    yield instance
    instance.stop()


def issue(session_factory: SessionFactory, action: CommandAction, ttl: timedelta) -> int:
    with session_scope(session_factory) as session:
        seal = session.scalars(select(Seal).where(Seal.device_id == DEVICE)).one()
        judge = get_user(session, username="judge")
        made = issue_command(
            session, seal=seal, action=action, args={}, key=COURT_KEY, ttl=ttl, user=judge, now=utc_now()
        )
        return made.id


def test_a_disarm_that_expired_while_the_seal_was_away_never_reaches_it(
    tmp_path: Path,
    broker: PrivateBroker,
    court: CourtSubscriber,
    runtimes: RuntimeFactory,
    dispatcher: CommandDispatcher,
    session_factory: SessionFactory,
) -> None:
    """The seal is away with its persistent session; the court's disarm (valid 3 s) expires unanswered, then the
    court's arm goes out. The seal boots with its clock behind, at the disarm's issue time, not synchronised: its wall
    clock would take the disarm for valid — but the broker dropped it with its expiry. Only the arm comes."""
    config = write_config(tmp_path, broker)
    online(runtimes, config, court).close()
    dispatcher.start()
    disarm = issue(session_factory, CommandAction.DISARM, timedelta(seconds=3))
    assert wait_until(lambda: row(session_factory, disarm).broker_accepted_at is not None, 10)
    expires = row(session_factory, disarm).expires_at
    assert wait_until(lambda: utc_now() > expires + timedelta(seconds=1), 10)  # its lifetime is what is tested
    arm = issue(session_factory, CommandAction.ARM, timedelta(minutes=10))
    dispatcher.wake()
    assert wait_until(lambda: row(session_factory, arm).broker_accepted_at is not None, 10)

    behind = utc_now() - row(session_factory, disarm).issued_at - timedelta(seconds=1)
    seal = online(runtimes, config, court, clock=BootedBehind(behind=behind), clock_state=UNSYNCED)
    assert court.wait_for(lambda c: bool(answers(c)), timeout=30)
    assert court.wait_for(lambda c: any(a["command_id"] == arm for _k, a in answers(c)), timeout=30)
    assert [(k, a["command_id"], a.get("result")) for k, a in answers(court)] == [("command_ack", arm, "already_armed")]
    assert seal.agent.armed and "disarmed" not in court.types(DEVICE)


def test_what_is_retained_on_the_seals_cmd_and_receipt_topics_is_cleared(
    broker: PrivateBroker, court: CourtSubscriber, dispatcher: CommandDispatcher
) -> None:
    filters = tuple(subscription_all(kind) for kind in (MessageKind.CMD, MessageKind.RECEIPT))
    for topic in (cmd_topic(DEVICE), receipt_topic(DEVICE), cmd_topic("seal-gone")):
        court._client.publish(topic, b"left here", qos=1, retain=True).wait_for_publish(10)
    assert len(retained_now(broker, filters)) == 3
    dispatcher.start()
    assert wait_until(lambda: retained_now(broker, filters) == [], 10)
