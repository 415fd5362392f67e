"""A command the seal carried out but could not answer (its ``command_ack`` refused by the outbox: a real SQLite
error from a trigger on the seal's database file, for that one command only) is answered when the broker delivers
it again, before any later command, and never refused: not as ``replayed`` because a later id slipped in on the
same connection, nor as ``expired`` because the seal restarted after its expiry."""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

from seal_agent.config import load_config
from seal_dev.broker import PrivateBroker
from seal_protocol.commands import CommandAction
from tests.agent.helpers import CourtSubscriber, RuntimeFactory, check_chain, verify_key, write_config
from tests.agent.test_commands import DEVICE, _OutboxFailures, command, online


def _answers(court: CourtSubscriber) -> list[tuple[str, int, object]]:
    """(kind, command_id, result or reason) of each answer, one per ``seq`` (the court may see copies)."""
    by_seq = {
        r.envelope.seq: (r.envelope.type.value, r.envelope.payload)
        for r in court.of(DEVICE)
        if r.envelope.type.value in ("command_ack", "command_rejected")
    }
    return [
        (kind, int(str(payload["command_id"])), payload.get("result", payload.get("reason")))
        for _, (kind, payload) in sorted(by_seq.items())
    ]


def _state_changes(court: CourtSubscriber) -> list[tuple[str, object]]:
    by_seq = {r.envelope.seq: r.envelope for r in court.of(DEVICE) if r.envelope.type.value in ("armed", "disarmed")}
    return [(e.type.value, e.payload["by"]) for _, e in sorted(by_seq.items())]


@contextmanager
def _refused_ack(config: Path, command_id: int, *, for_good: bool = False) -> Iterator[sqlite3.Connection]:
    """The seal's outbox refuses the ``command_ack`` of ``command_id`` while inside: as a full disk would (the
    ``event_lost`` that would name it is refused too), or, ``for_good``, that event alone (the recorder commits an
    ``event_lost`` in its place)."""
    database = sqlite3.connect(load_config(config).outbox_path, isolation_level=None)
    ack = '"type":"command_ack"' if for_good else '"command_ack"'
    database.execute(
        f"CREATE TRIGGER refuse_ack BEFORE INSERT ON outbox WHEN instr(NEW.data, '{ack}') > 0 "
        f"AND instr(NEW.data, '\"command_id\":{command_id},') > 0 "
        "BEGIN SELECT RAISE(ABORT, 'database or disk is full (test)'); END"
    )
    try:
        yield database
    finally:
        database.execute("DROP TRIGGER refuse_ack")  # room again
        database.close()


def test_an_arm_whose_answer_failed_is_answered_before_a_later_command_of_the_same_connection(
    tmp_path: Path, broker: PrivateBroker, runtimes: RuntimeFactory
) -> None:
    """The arm (5) is carried out, its ack refused; a ping (6) follows on the same connection. The ping must not be
    taken first (its id would make the arm ``replayed``): the seal renews the connection by itself, the broker
    delivers 5 and 6 again, and each is answered once, in order; the arm is not carried out twice."""
    config = write_config(tmp_path, broker)
    court = CourtSubscriber(broker, persistent=True).start()
    failures = _OutboxFailures()
    logging.getLogger("seal_agent").addHandler(failures)
    try:
        runtime = online(runtimes, config, court)
        court.publish_command(DEVICE, command(4, CommandAction.DISARM))
        assert court.wait_for(lambda c: len(_answers(c)) == 1)
        with _refused_ack(config, 5):
            court.publish_command(DEVICE, command(5, CommandAction.ARM))
            assert failures.seen.wait(30), "the seal did not try to answer"
        court.publish_command(DEVICE, command(6, CommandAction.PING))  # e.g. a clerk's ping, same connection
        assert court.wait_for(lambda c: len(_answers(c)) >= 3, timeout=30), _answers(court)
        time.sleep(0.5)  # a duplicate or a refusal would come now
        assert _answers(court) == [
            ("command_ack", 4, "disarmed"),
            ("command_ack", 5, "armed"),  # what the seal did, not "already_armed"
            ("command_ack", 6, "pong"),
        ]
        assert _state_changes(court) == [("disarmed", 4), ("armed", 5)]
        assert runtime.agent.armed and runtime.commands.last_accepted_id == 6
        check_chain(court.of(DEVICE), verify_key(config))
    finally:
        logging.getLogger("seal_agent").removeHandler(failures)
        court.close()


def test_an_arm_whose_answer_failed_is_acknowledged_by_the_restarted_seal_after_its_expiry(
    tmp_path: Path, broker: PrivateBroker, runtimes: RuntimeFactory
) -> None:
    """The seal stops before the arm (5) comes again, and is back only after the arm expired: the seal's own
    ``armed`` event says ``by: 5``, so it answers ``armed`` (not ``expired``: it obeyed) without arming again."""
    config = write_config(tmp_path, broker)
    court = CourtSubscriber(broker, persistent=True).start()
    failures = _OutboxFailures()
    logging.getLogger("seal_agent").addHandler(failures)
    try:
        runtime = online(runtimes, config, court)
        court.publish_command(DEVICE, command(4, CommandAction.DISARM))
        assert court.wait_for(lambda c: len(_answers(c)) == 1)
        with _refused_ack(config, 5):
            court.publish_command(DEVICE, command(5, CommandAction.ARM, ttl=timedelta(seconds=3)))
            assert failures.seen.wait(30), "the seal did not try to answer"
            assert runtime.agent.armed
            runtime.close()  # the broker's session keeps the unacknowledged arm
        time.sleep(3.5)  # the arm expires meanwhile

        again = online(runtimes, config, court)
        assert court.wait_for(lambda c: len(_answers(c)) >= 2, timeout=30), _answers(court)
        assert _answers(court) == [("command_ack", 4, "disarmed"), ("command_ack", 5, "armed")]
        assert _state_changes(court) == [("disarmed", 4), ("armed", 5)]
        assert again.agent.armed and again.commands.last_accepted_id == 5
        assert court.wait_for(lambda c: c.seqs(DEVICE) == set(range(1, max(c.seqs(DEVICE)) + 1)))  # no gap
        check_chain(court.of(DEVICE), verify_key(config))
    finally:
        logging.getLogger("seal_agent").removeHandler(failures)
        court.close()


def test_an_answer_that_can_never_be_recorded_does_not_hold_up_later_commands(
    tmp_path: Path, broker: PrivateBroker, runtimes: RuntimeFactory
) -> None:
    """The arm (5) is carried out and its ack refused for good: an ``event_lost`` naming it stands in its place, and
    the ping (6) behind it is taken at once. The arm is not carried out or answered again, not even after a restart
    (its ``armed`` says ``by: 5``): the court sees the ``event_lost`` and the arm expire."""
    config = write_config(tmp_path, broker)
    court = CourtSubscriber(broker, persistent=True).start()
    try:
        runtime = online(runtimes, config, court)
        court.publish_command(DEVICE, command(4, CommandAction.DISARM))
        assert court.wait_for(lambda c: len(_answers(c)) == 1)
        with _refused_ack(config, 5, for_good=True):
            court.publish_command(DEVICE, command(5, CommandAction.ARM))
            court.publish_command(DEVICE, command(6, CommandAction.PING))
            assert court.wait_for(lambda c: len(_answers(c)) >= 2, timeout=15), _answers(court)
        lost = [r.envelope.payload for r in court.of(DEVICE) if r.envelope.type.value == "event_lost"]
        assert [(p["lost_type"], p["command_id"]) for p in lost[:1]] == [("command_ack", 5)]
        assert runtime.agent.armed and runtime.commands.last_accepted_id == 6
        runtime.close()

        again = online(runtimes, config, court)
        court.publish_command(DEVICE, command(7, CommandAction.PING))
        assert court.wait_for(lambda c: len(_answers(c)) >= 3, timeout=30), _answers(court)
        time.sleep(0.5)  # a duplicate or a late answer would come now
        assert _answers(court) == [
            ("command_ack", 4, "disarmed"),
            ("command_ack", 6, "pong"),
            ("command_ack", 7, "pong"),
        ]
        assert _state_changes(court) == [("disarmed", 4), ("armed", 5)]
        assert again.agent.armed and again.commands.last_accepted_id == 7
        check_chain(court.of(DEVICE), verify_key(config))
    finally:
        court.close()


def test_an_arm_whose_own_armed_event_can_never_be_recorded_does_not_hold_up_later_commands(
    tmp_path: Path, broker: PrivateBroker, runtimes: RuntimeFactory
) -> None:
    """The outbox refuses the ``armed`` event for its own sake (the ``event_lost`` naming it is committed): the arm
    takes no effect, is not answered and not tried again, and the ping behind it is answered at once. Before, the
    arm was tried again at every renewed connection, an ``event_lost`` each time, and no later command was taken."""
    config = write_config(tmp_path, broker)
    court = CourtSubscriber(broker, persistent=True).start()
    try:
        runtime = online(runtimes, config, court)
        court.publish_command(DEVICE, command(4, CommandAction.DISARM))
        assert court.wait_for(lambda c: len(_answers(c)) == 1)
        database = sqlite3.connect(load_config(config).outbox_path, isolation_level=None)
        database.execute(
            'CREATE TRIGGER refuse_armed BEFORE INSERT ON outbox WHEN instr(NEW.data, \'"type":"armed"\') > 0 '
            "BEGIN SELECT RAISE(ABORT, 'refused for good (test)'); END"
        )
        try:
            court.publish_command(DEVICE, command(5, CommandAction.ARM))
            court.publish_command(DEVICE, command(6, CommandAction.PING))
            assert court.wait_for(lambda c: ("command_ack", 6, "pong") in _answers(c), timeout=30), _answers(court)
            time.sleep(3)  # an arm tried again would leave another event_lost now
        finally:
            database.close()
        lost = [r.envelope.payload for r in court.of(DEVICE) if r.envelope.type.value == "event_lost"]
        assert _answers(court) == [("command_ack", 4, "disarmed"), ("command_ack", 6, "pong")]
        assert [payload["lost_type"] for payload in lost] == ["armed"]
        assert not runtime.agent.armed and runtime.commands.last_accepted_id == 6
        check_chain(court.of(DEVICE), verify_key(config))
    finally:
        court.close()
