"""An arm or a disarm that fails after the seal has already done what it asks — it acknowledged an earlier command
of the same action, and no command of the other action was issued between — needs nobody: no alarm opens, and one
open already closes when that ack arrives. Through the dispatcher's round and the real ingest."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from seal_protocol.commands import CommandAction
from server.app import create_app
from server.commands.models import CourtCommand
from server.config import CommandSettings
from server.core.db import SessionFactory
from tests.server.auth_helpers import make_settings
from tests.server.helpers import CASE_A
from tests.server.removal_world import RemovalWorld, make_world
from tests.server.test_command_alarms import alarms, run_round, shown
from tests.server.test_commands import World


@pytest.fixture
def world(session_factory: SessionFactory, tmp_path: Path) -> World:
    return World(session_factory, tmp_path / "snapshots")


@pytest.fixture
def removal(database_url: str, session_factory: SessionFactory, tmp_path: Path) -> Iterator[RemovalWorld]:
    settings = make_settings(database_url, tmp_path)
    commands = CommandSettings(signing_key_file=settings.commands.signing_key_file, ttl_s=60)
    with TestClient(create_app(settings.model_copy(update={"commands": commands}), with_ingest=False)) as client:
        yield make_world(session_factory, tmp_path, client)


def test_a_resent_disarm_that_expires_after_the_first_s_late_ack_opens_no_alarm(
    removal: RemovalWorld, session_factory: SessionFactory
) -> None:
    """The first disarm expires (an alarm), the clerk re-sends it, the first one's ack arrives late: the request is
    ``disarmed`` and the alarm closes. The re-sent disarm then expires unanswered: nothing waits for it."""
    request_id = removal.filed()
    first = removal.commands(removal.approved(request_id))
    removal.answer("seal-a2", first["seal-a2"].id)
    run_round(session_factory, later=timedelta(seconds=61))
    assert [(a.kind, a.state) for a in alarms(session_factory, "seal-a1")] == [("disarm_failed", "open")]
    removal.ok("clerk", request_id, "resend-disarm", {"device_id": None, "note": "再次发送"})
    removal.answer("seal-a1", first["seal-a1"].id)
    assert removal.read(request_id)["state"] == "disarmed"
    with session_factory() as session:
        query = select(func.max(CourtCommand.id)).where(CourtCommand.device_id == "seal-a1")
        resent = session.scalar(query)
    assert resent is not None and resent > first["seal-a1"].id
    assert resent in run_round(session_factory, later=timedelta(seconds=125))
    run_round(session_factory, later=timedelta(seconds=130))
    assert [(a.kind, a.state) for a in alarms(session_factory, "seal-a1")] == [("disarm_failed", "closed")]


def test_an_earlier_disarm_s_late_ack_closes_the_alarm_of_a_later_one(
    world: World, session_factory: SessionFactory
) -> None:
    first, second = world.issue(CommandAction.DISARM), world.issue(CommandAction.DISARM)
    assert run_round(session_factory) == [first, second]
    [alarm] = alarms(session_factory)
    assert shown(alarm) == ("disarm_failed", "medium", "open", CASE_A, 1, second)
    world.ack(first, action="disarm", result="disarmed")
    [alarm] = alarms(session_factory)
    assert alarm.state == "closed" and f"command {first}" in (alarm.closed_note or "")


def test_an_arm_whose_purpose_an_earlier_acknowledged_arm_fulfils_opens_no_alarm(
    world: World, session_factory: SessionFactory
) -> None:
    first = world.issue(CommandAction.ARM)
    world.issue(CommandAction.PING)  # not an arm or a disarm: changes nothing
    second = world.issue(CommandAction.ARM)
    world.ack(first, action="arm", result="armed")
    assert second in run_round(session_factory)
    assert alarms(session_factory) == []
    world.reject(second, "expired")  # the seal's late refusal of the second: still nothing to do
    assert alarms(session_factory) == []
