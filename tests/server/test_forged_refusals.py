"""The court never settles a command with a seal's refusal of bytes no court key signed (``malformed``, ``unsigned``,
``bad_signature``): the id such bytes claim is nobody's word. The event is stored and counted, the command stays as
it was, and the seal's later answer to the real command settles it."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from seal_protocol import EventType
from server.core.db import SessionFactory
from server.export.report_text import event_details
from server.ingest.results import Outcome
from tests.server.test_commands import World


@pytest.fixture
def world(session_factory: SessionFactory, tmp_path: Any) -> World:
    return World(session_factory, tmp_path / "snapshots")


@pytest.mark.parametrize("reason", ["bad_signature", "unsigned", "malformed"])
def test_an_older_seals_refusal_naming_the_command_id_of_forged_bytes_settles_nothing(
    world: World,
    reason: str,
) -> None:
    real = world.issue()  # the judge's disarm, pending
    assert world.reject(real, reason) is Outcome.STORED  # an older seal names the forged bytes' id command_id
    row = world.command(real)
    assert (row.state, row.reason, row.answer_seq) == ("pending", None, None)
    world.ack(real, result="disarmed")  # the real disarm then reaches the seal and is carried out
    assert world.command(real).state == "acknowledged"
    assert world.answers() == {"unverified": 1, "acknowledged": 1}
    assert world.events("command_rejected") == 1


def test_a_refusal_claiming_an_id_is_stored_and_settles_nothing(world: World) -> None:
    real = world.issue()
    payload = {
        "command_id": None,
        "claimed_command_id": real,
        "sha256": hashlib.sha256(b"forged").hexdigest(),
        "reason": "bad_signature",
        "detail": "not signed by the pinned court key",
    }
    assert world.answer(EventType.COMMAND_REJECTED, payload) is Outcome.STORED
    assert world.command(real).state == "pending"
    assert world.answers() == {"unverified": 1}
    world.reject(real, "wrong_case")  # a refusal decided after the signature verified still settles it
    assert (world.command(real).state, world.command(real).reason) == ("rejected", "wrong_case")


def test_the_case_report_shows_such_a_refusal_as_unverified_not_as_the_courts_command() -> None:
    payload = {"command_id": None, "claimed_command_id": 41, "reason": "bad_signature", "detail": "x"}
    zh, en = event_details("command_rejected", payload)
    assert "41" in zh and en.startswith("unverified command (claiming 41)"), (zh, en)
    assert event_details("command_rejected", {"command_id": 41, "reason": "expired"})[1].startswith("command 41")


def test_a_refusal_of_the_courts_own_bytes_settles_its_command(world: World) -> None:
    """A seal that cannot verify the court's genuine command (it pins an older court key, or is too old to read it)
    refuses it as bad_signature; its refusal carries the SHA-256 of exactly the bytes the court signed and published
    as that command: the command is refused, not left pending until it expires. Found by a review."""
    real = world.issue()
    payload = {
        "command_id": None,
        "claimed_command_id": real,
        "sha256": hashlib.sha256(world.command(real).signed).hexdigest(),
        "reason": "bad_signature",
        "detail": "not signed by the pinned court key",
    }
    assert world.answer(EventType.COMMAND_REJECTED, payload) is Outcome.STORED
    row = world.command(real)
    assert (row.state, row.reason) == ("rejected", "bad_signature")


def test_a_refusal_whose_digest_is_not_the_commands_settles_nothing(world: World) -> None:
    real = world.issue()
    payload = {
        "command_id": None,
        "claimed_command_id": real,
        "sha256": hashlib.sha256(world.command(real).signed + b" ").hexdigest(),
        "reason": "bad_signature",
        "detail": "forged",
    }
    assert world.answer(EventType.COMMAND_REJECTED, payload) is Outcome.STORED
    assert world.command(real).state == "pending"
