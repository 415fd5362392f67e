"""A refusal of bytes no court key signed names no court command: it signs the id they claim as
``claimed_command_id``, with the SHA-256 of the bytes, and ``command_id`` null (docs/protocol.md, Commands)."""

from __future__ import annotations

import hashlib
from pathlib import Path

from seal_dev.broker import PrivateBroker
from seal_protocol.commands import CommandAction
from seal_protocol.signing import generate_signing_key
from tests.agent.helpers import CourtSubscriber, RuntimeFactory, write_config
from tests.agent.test_commands import command, send, unsigned


def test_a_refusal_of_forged_bytes_claims_their_id_and_names_no_court_command(
    tmp_path: Path, broker: PrivateBroker, court: CourtSubscriber, runtimes: RuntimeFactory
) -> None:
    runtime = runtimes(write_config(tmp_path, broker))
    runtime.start()
    assert runtime.publisher.wait_listening(30)
    forged = command(41, CommandAction.ARM, key=generate_signing_key())  # not the court's key
    kind, answer = send(court, forged)
    assert (kind, answer["reason"]) == ("command_rejected", "bad_signature"), answer
    assert answer["command_id"] is None
    assert answer["claimed_command_id"] == 41
    assert answer["sha256"] == hashlib.sha256(forged).hexdigest()
    kind, answer = send(court, unsigned(42))
    assert (kind, answer["command_id"], answer["claimed_command_id"], answer["reason"]) == (
        "command_rejected",
        None,
        42,
        "unsigned",
    ), answer
    garbled = command(43).replace(b'"args":{}', b'"args": {}')  # not canonical: malformed, its id still readable
    kind, answer = send(court, garbled)
    assert (kind, answer["command_id"], answer["claimed_command_id"], answer["reason"]) == (
        "command_rejected",
        None,
        43,
        "malformed",
    ), answer
    assert answer["sha256"] == hashlib.sha256(garbled).hexdigest()
    # The court's real command 41 arriving next is carried out and acknowledged under its id.
    arm = command(41, CommandAction.ARM)
    assert send(court, arm) == (
        "command_ack",
        {"command_id": 41, "action": "arm", "result": "already_armed", "sha256": hashlib.sha256(arm).hexdigest()},
    )
    # A refusal decided after the signature verified names the court's command.
    again = command(41)
    kind, answer = send(court, again)
    assert (kind, answer["command_id"], answer["reason"]) == ("command_rejected", 41, "replayed"), answer
    assert "claimed_command_id" not in answer  # a replayed one names the bytes it refused, and its last accepted id
    assert (answer["sha256"], answer["last_accepted_id"]) == (hashlib.sha256(again).hexdigest(), 41)
