"""A disarm the seal refused because it could not verify the court's own bytes (``command_id`` null, the SHA-256 of
the bytes the court published) settles the command as refused and opens its alarm, whose note says so
(``refusal_own``: worded "could not verify the court's signature", not "bad signature, not the court's key")."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from sqlalchemy import select

from seal_protocol import EventType
from seal_protocol.commands import CommandAction
from server.alarms.models import Alarm
from server.core.db import SessionFactory
from tests.server.test_commands import World


@pytest.fixture
def world(session_factory: SessionFactory, tmp_path: Path) -> World:
    return World(session_factory, tmp_path / "snapshots")


def _refuse(world: World, command_id: int, refused: bytes) -> None:
    payload = {
        "command_id": None,
        "claimed_command_id": command_id,
        "sha256": hashlib.sha256(refused).hexdigest(),
        "reason": "bad_signature",
        "detail": "not signed by the pinned court key",
    }
    world.answer(EventType.COMMAND_REJECTED, payload)


def test_the_alarm_of_a_disarm_refused_as_unverifiable_says_it_was_the_courts_own(
    world: World, session_factory: SessionFactory
) -> None:
    disarm = world.issue(CommandAction.DISARM)
    _refuse(world, disarm, b"forged bytes claiming the disarm's id")
    with session_factory() as session:
        assert session.scalars(select(Alarm)).all() == []  # nobody's word: nothing settled, nothing failed
    _refuse(world, disarm, world.command(disarm).signed)
    with session_factory() as session:
        [alarm] = session.scalars(select(Alarm)).all()
    assert alarm.kind == "disarm_failed"
    assert (alarm.details["refusal"], alarm.details["refusal_own"]) == ("bad_signature", True)


def test_the_alarm_of_a_refusal_decided_after_the_signature_verified_is_not_of_unverifiable_bytes(
    world: World, session_factory: SessionFactory
) -> None:
    disarm = world.issue(CommandAction.DISARM)
    world.reject(disarm, "wrong_case")
    with session_factory() as session:
        [alarm] = session.scalars(select(Alarm)).all()
    assert (alarm.details["refusal"], alarm.details["refusal_own"]) == ("wrong_case", False)
