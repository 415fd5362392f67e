"""A disarm's answers as a hostile network delivers them: out of order, twice, from another seal, naming another
command; the request must end saying what the seals signed, nothing else."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from seal_protocol import EventType
from server.app import create_app
from server.commands.models import CourtCommand
from server.config import CommandSettings, RemovalSettings
from server.core.db import SessionFactory
from tests.server.auth_helpers import make_settings
from tests.server.helpers import message
from tests.server.removal_world import RemovalWorld, make_world


@pytest.fixture
def world(database_url: str, session_factory: SessionFactory, tmp_path: Path) -> Iterator[RemovalWorld]:
    settings = make_settings(database_url, tmp_path)
    settings = settings.model_copy(
        update={
            "commands": CommandSettings(signing_key_file=settings.commands.signing_key_file, ttl_s=60),
            "removal": RemovalSettings(proof_max_bytes=64 * 1024, proof_max_files=3),
        }
    )
    with TestClient(create_app(settings, with_ingest=False)) as client:
        yield make_world(session_factory, tmp_path, client)


def command(world: RemovalWorld, command_id: int) -> CourtCommand:
    with world.session_factory() as session:
        row = session.get(CourtCommand, command_id)
        assert row is not None
        return row


def test_a_replayed_refusal_stored_before_the_ack_it_follows_does_not_say_the_seal_refused(
    world: RemovalWorld,
) -> None:
    """The seal carried out the disarm (its ack, seq n) and answered a second delivery of it ``replayed`` (seq n+1);
    two ingest workers store n+1 first. ``replayed`` says the seal obeyed it already: it must not settle the
    command ``rejected`` (and the seal ``refused``) ahead of the ack that follows."""
    request_id = world.filed()
    commands = world.commands(world.approved(request_id))
    world.answer("seal-a1", commands["seal-a1"].id)
    seal, command_id = world.seals["seal-a2"], commands["seal-a2"].id
    ack = seal.event(EventType.COMMAND_ACK, {"command_id": command_id, "action": "disarm", "result": "disarmed"})
    replayed = seal.event(
        EventType.COMMAND_REJECTED,
        {"command_id": command_id, "reason": "replayed", "detail": f"id {command_id} is not above the last accepted"},
    )
    [first] = world.ingestor.ingest([message(seal.event_topic, replayed)])
    assert (first.command_answer, command(world, command_id).state) == ("replayed", "pending")
    assert [s["status"] for s in world.read(request_id)["seals"]] == ["disarmed", "sent"]
    [second] = world.ingestor.ingest([message(seal.event_topic, ack)])
    assert second.command_answer == "acknowledged"
    assert command(world, command_id).state == "acknowledged"
    shown = world.read(request_id)
    assert shown["state"] == "disarmed"
    assert [s["status"] for s in shown["seals"]] == ["disarmed", "disarmed"]
