"""A court whose command ids went back (a restored database) sends a new command under an id the seal accepted for
another: the seal refuses it ``replayed``, and its signed refusal names the SHA-256 of the bytes it refused and the
last id it accepted, so that the court tells this from the command it sent delivered again (docs/protocol.md,
Commands). Found by a review: the refusal named the id only, and the court took it for "already obeyed"."""

from __future__ import annotations

import hashlib
from pathlib import Path

from seal_dev.broker import PrivateBroker
from seal_protocol.commands import CommandAction
from tests.agent.helpers import CourtSubscriber, RuntimeFactory, write_config
from tests.agent.test_commands import command, send


def test_a_new_command_under_an_accepted_id_is_refused_with_its_digest_and_the_last_accepted_id(
    tmp_path: Path, broker: PrivateBroker, court: CourtSubscriber, runtimes: RuntimeFactory
) -> None:
    runtime = runtimes(write_config(tmp_path, broker))
    runtime.start()
    assert runtime.publisher.wait_listening(30)
    assert send(court, command(1, CommandAction.PING))[0] == "command_ack"
    assert send(court, command(2, CommandAction.ARM))[1]["result"] == "already_armed"
    # The court, restored from a backup taken before command 1 was issued, gives id 1 to a disarm.
    reused = command(1, CommandAction.DISARM)
    kind, answer = send(court, reused)
    assert (kind, answer["command_id"], answer["reason"]) == ("command_rejected", 1, "replayed"), answer
    assert answer["sha256"] == hashlib.sha256(reused).hexdigest()
    assert answer["last_accepted_id"] == 2
    assert runtime.agent.armed  # not carried out


def test_an_ack_signs_the_digest_of_the_command_it_carried_out(
    tmp_path: Path, broker: PrivateBroker, court: CourtSubscriber, runtimes: RuntimeFactory
) -> None:
    """So that a late ack of a command carried out before the court's ids went back does not settle a new command
    under the same id (the court compares the digest with the command it signed)."""
    runtime = runtimes(write_config(tmp_path, broker))
    runtime.start()
    assert runtime.publisher.wait_listening(30)
    disarm = command(1, CommandAction.DISARM)
    kind, answer = send(court, disarm)
    assert (kind, answer["result"]) == ("command_ack", "disarmed"), answer
    assert answer["sha256"] == hashlib.sha256(disarm).hexdigest()
