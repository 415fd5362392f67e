"""A seal's answers name digests (``sha256``) the court compares with the command it signed. Found by a review: a
digest that was a string but not ASCII (``"é" * 64``) made ``hmac.compare_digest`` raise, so a signed, verified
``command_rejected`` could never be stored — a hole in the seal's chain, its event sent again without end — and a
stored one later broke the case's evidence report. Any value in that field is now simply "not this command's bytes",
and a defect of the command bookkeeping no longer makes a signed event unstorable."""

from __future__ import annotations

from typing import Any

import pytest

from seal_protocol import EventType
from server.core.db import SessionFactory
from server.export.report import render_report
from server.export.report_facts import CommandFacts
from server.ingest.results import Outcome
from tests.server.test_commands import World
from tests.server.test_report_pdf import T0, Events, facts

ODD_DIGESTS = ["é" * 64, "AB" * 32, "ab" * 31, "", 7, None, ["ab" * 32], {"x": 1}, "ａ" * 64]
ODD_IDS = ["non-ascii", "upper-hex", "short", "empty", "int", "null", "list", "object", "full-width"]


@pytest.fixture
def world(session_factory: SessionFactory, tmp_path: Any) -> World:
    return World(session_factory, tmp_path / "snapshots")


@pytest.mark.parametrize("digest", ODD_DIGESTS, ids=ODD_IDS)
def test_answers_with_any_digest_are_stored_and_settle_nothing_they_do_not_prove(world: World, digest: Any) -> None:
    disarm = world.issue()
    refusals = [
        {"command_id": disarm, "reason": "replayed", "detail": "x", "sha256": digest, "last_accepted_id": disarm},
        {"command_id": None, "claimed_command_id": disarm, "reason": "bad_signature", "detail": "x", "sha256": digest},
    ]
    for payload in refusals:
        assert world.answer(EventType.COMMAND_REJECTED, payload) is Outcome.STORED
    assert world.ack(disarm, result="disarmed", sha256=digest) is Outcome.STORED
    # No digest of this command's bytes: the replayed refusal and the ack are of another command under its id.
    assert (world.command(disarm).state, world.command(disarm).reason) == ("rejected", "replayed")
    assert world.events("command_rejected") == 2 and world.events("command_ack") == 1


@pytest.mark.parametrize("digest", ODD_DIGESTS, ids=ODD_IDS)
def test_the_evidence_report_renders_a_refusal_with_any_digest(digest: Any) -> None:
    events = Events()
    events.add("command_rejected", T0, command_id=None, claimed_command_id=9, reason="bad_signature", detail="x",
               sha256=digest)  # fmt: skip
    commands = [CommandFacts(9, "seal-01", "disarm", "judge.wang", T0, "pending", signed_sha256="ab" * 32)]
    assert render_report(facts(events=events.items, commands=commands)).startswith(b"%PDF")
