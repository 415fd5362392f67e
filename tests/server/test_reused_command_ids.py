"""A court whose command ids went back (a restored backup, a failover to a replica that lost commits) gives a new
command an id its seal accepted for another one. The seal refuses it ``replayed``, signing the SHA-256 of the bytes
it refused and its last accepted id: other bytes than the command's settle it ``rejected`` with the court's
explanation, and the court's next ids climb above the seal's. The same bytes (a delivery again) and an older seal's
refusal without a digest keep the older meaning: the seal's own answer decides. Found by a review: the command stayed
pending, expired unanswered, and a judge could waive a disarm the seal never carried out."""

from __future__ import annotations

import hashlib
import logging
from datetime import timedelta
from typing import Any

import pytest

from seal_protocol import EventType
from seal_protocol.commands import CommandAction
from server.commands.service import expire_due
from server.core.base import utc_now
from server.core.db import SessionFactory, session_scope
from server.ingest.results import Outcome
from tests.server.test_commands import World

MAX_ID_JUMP = 1_000_000  # server.commands.reused_ids.MAX_ID_JUMP


@pytest.fixture
def world(session_factory: SessionFactory, tmp_path: Any) -> World:
    return World(session_factory, tmp_path / "snapshots")


def replayed(world: World, command_id: int, signed: bytes, last_accepted: int | None) -> Outcome:
    payload: dict[str, Any] = {
        "command_id": command_id,
        "reason": "replayed",
        "detail": f"id {command_id} is not above the last accepted {last_accepted}",
        "sha256": hashlib.sha256(signed).hexdigest(),
    }
    if last_accepted is not None:
        payload["last_accepted_id"] = last_accepted
    return world.answer(EventType.COMMAND_REJECTED, payload)


def test_a_refusal_of_other_bytes_under_the_id_rejects_the_command_and_moves_the_ids_above_the_seals(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    disarm = world.issue()  # the restored court's id 1; the seal had accepted commands up to 7
    with caplog.at_level(logging.ERROR, logger="server.commands.reused_ids"):
        assert replayed(world, disarm, b"the command 1 the seal accepted before the restore", 7) is Outcome.STORED
    row = world.command(disarm)
    assert (row.state, row.reason, row.answer_seq) == ("rejected", "replayed", world.seal.seq)
    assert row.result is not None and row.result["last_accepted_id"] == 7
    note = str(row.result["court_detail"])
    zh, en = note.split(" / ", 1)
    assert "法院的指令编号落后于封条" in zh and "7" in zh and "重新下达" in zh
    assert en.startswith("The court's command ids are behind the seal's") and "restored from a backup" in en
    assert world.answers() == {"rejected": 1}
    assert any(r.levelno == logging.ERROR and "went back" in r.getMessage() for r in caplog.records)
    # The court's next commands, to this seal or another, take ids the seal has not accepted.
    assert world.issue() == 8
    assert world.issue(device_id="seal-b") == 9
    assert world.issue() == 10


def test_an_expired_command_refused_so_is_rejected_too(world: World, session_factory: SessionFactory) -> None:
    disarm = world.issue()
    with session_scope(session_factory) as session:
        assert expire_due(session, now=utc_now() + timedelta(minutes=11)) == [(disarm, "seal-a")]
    replayed(world, disarm, b"another command", 3)
    assert (world.command(disarm).state, world.command(disarm).reason) == ("rejected", "replayed")
    assert world.issue() == 4


def test_a_refusal_of_the_commands_own_bytes_keeps_it_pending(world: World) -> None:
    """A delivery again of the command the seal accepted: its ack (an earlier seq) decides."""
    disarm = world.issue()
    assert replayed(world, disarm, world.command(disarm).signed, disarm) is Outcome.STORED
    assert world.command(disarm).state == "pending"
    assert world.answers() == {"replayed": 1}
    world.ack(disarm, result="disarmed")
    assert world.command(disarm).state == "acknowledged"
    assert world.issue() == disarm + 1


def test_an_older_seals_refusal_without_a_digest_keeps_the_older_meaning(world: World) -> None:
    disarm = world.issue()
    world.reject(disarm, "replayed")  # {command_id, reason, detail} only
    assert world.command(disarm).state == "pending"
    assert world.answers() == {"replayed": 1}
    assert world.issue() == disarm + 1


def test_a_last_accepted_id_far_beyond_the_command_does_not_move_the_ids(world: World) -> None:
    """A seal's word alone does not exhaust the court's ids: the command is rejected, the ids stay."""
    disarm = world.issue()
    replayed(world, disarm, b"another command", disarm + MAX_ID_JUMP + 1)
    row = world.command(disarm)
    assert (row.state, row.result and row.result["court_ids_above"]) == ("rejected", None)
    assert world.issue() == disarm + 1


def test_a_late_ack_of_another_command_under_the_id_rejects_the_command_instead_of_settling_it(world: World) -> None:
    """The seal's ack of the command it carried out under this id before the court's ids went back, delivered late:
    its ``sha256`` names those bytes, not this command's. The seal will never carry this one out (its id is not above
    the last accepted): rejected with the court's explanation — before, the ack settled it ``acknowledged``, and a
    disarm the seal never received counted as done. Another action under the id is the same case, not a mismatch."""
    disarm = world.issue()
    other = hashlib.sha256(b"the command 1 the seal carried out before the restore").hexdigest()
    assert world.ack(disarm, result="disarmed", sha256=other) is Outcome.STORED
    row = world.command(disarm)
    assert (row.state, row.reason) == ("rejected", "replayed")
    assert row.result is not None and "法院的指令编号落后于封条" in str(row.result["court_detail"])
    assert world.answers() == {"rejected": 1}
    arm = world.issue(CommandAction.ARM)
    assert world.ack(arm, action="ping", result="pong", sha256=other) is Outcome.STORED
    assert (world.command(arm).state, world.command(arm).reason) == ("rejected", "replayed")


def test_an_ack_naming_the_commands_own_bytes_settles_it(world: World) -> None:
    disarm = world.issue()
    own = hashlib.sha256(world.command(disarm).signed or b"").hexdigest()
    world.ack(disarm, result="disarmed", sha256=own)
    assert (world.command(disarm).state, world.answers()) == ("acknowledged", {"acknowledged": 1})
