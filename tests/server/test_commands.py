"""Court commands in the database: the one transition function, and the ingest turning a seal's signed answers
into command states in the same transaction as the answer's event."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from seal_protocol import EventType
from seal_protocol.commands import CommandAction, CommandRefused, RejectReason, check_command
from seal_protocol.signing import generate_signing_key
from server.auth.access import Role
from server.auth.users import get_user
from server.commands.models import CourtCommand
from server.commands.service import AnswerOutcome, expire_due, issue_command
from server.commands.state import CommandState, states_leading_to, transition
from server.core.base import utc_now
from server.core.db import SessionFactory, session_scope
from server.core.metrics import IngestMetrics
from server.errors import Conflict
from server.evidence.models import Event
from server.ingest.ingestor import Ingestor
from server.ingest.results import Outcome
from server.removal.release import take_off_moved
from server.seals.enrolment import enrol_seal
from server.seals.models import Seal
from tests.prometheus import samples
from tests.server.auth_helpers import add_user
from tests.server.helpers import CASE_A, CASE_B, SimulatedSeal, message, register

S = CommandState
#: Written out by hand: the rules, not a copy of the implementation's table.
ALLOWED = {
    (S.PENDING, S.ACKNOWLEDGED),
    (S.PENDING, S.REJECTED),
    (S.PENDING, S.EXPIRED),
    (S.EXPIRED, S.ACKNOWLEDGED),  # a late answer: the seal carried it out before the expiry, by its clock
    (S.EXPIRED, S.REJECTED),
    (S.REJECTED, S.ACKNOWLEDGED),  # a copy refused, another carried out (published twice): the signed ack wins
}
COURT_KEY = generate_signing_key()


@pytest.mark.parametrize("current", list(S))
@pytest.mark.parametrize("target", list(S))
def test_transitions(current: CommandState, target: CommandState) -> None:
    if (current, target) in ALLOWED:
        assert transition(current.value, target) is target
    else:
        with pytest.raises(Conflict):
            transition(current, target)


def test_only_pending_commands_expire() -> None:
    assert states_leading_to(S.EXPIRED) == {S.PENDING}
    assert {s for s in S if s.is_final} == {S.ACKNOWLEDGED}


class World:
    def __init__(self, session_factory: SessionFactory, snapshot_dir: Any) -> None:
        self.session_factory = session_factory
        self.seal, self.other = SimulatedSeal("seal-a", CASE_A), SimulatedSeal("seal-b", CASE_B)
        register(session_factory, self.seal, self.other)
        add_user(session_factory, "clerk", Role.CLERK)
        self.metrics = IngestMetrics()
        self.ingestor = Ingestor(session_factory, metrics=self.metrics, snapshot_dir=snapshot_dir)

    def issue(
        self,
        action: CommandAction = CommandAction.DISARM,
        *,
        device_id: str = "seal-a",
        ttl: timedelta = timedelta(minutes=10),
    ) -> int:
        with session_scope(self.session_factory) as session:
            seal = session.scalars(select(Seal).where(Seal.device_id == device_id)).one()
            user = get_user(session, username="clerk")
            row = issue_command(
                session, seal=seal, action=action, args={}, key=COURT_KEY, ttl=ttl, user=user, now=utc_now()
            )
            return row.id

    def answer(self, type: EventType, payload: dict[str, Any], seal: SimulatedSeal | None = None) -> Outcome:
        seal = seal or self.seal
        [result] = self.ingestor.ingest([message(seal.event_topic, seal.event(type, payload))])
        return result.outcome

    def ack(self, command_id: int, action: str = "disarm", **extra: Any) -> Outcome:
        return self.answer(EventType.COMMAND_ACK, {"command_id": command_id, "action": action, **extra})

    def reject(self, command_id: int | None, reason: str = "expired") -> Outcome:
        return self.answer(EventType.COMMAND_REJECTED, {"command_id": command_id, "reason": reason, "detail": "x"})

    def move_to(self, case_no: str) -> None:
        """``seal-server seal add --case``: the seal moves to ``case_no`` (its old binding's pending commands expire),
        and is installed there (its configuration names the case)."""
        with session_scope(self.session_factory) as session:
            enrol_seal(
                session,
                actor=None,
                device_id="seal-a",
                public_key=self.seal.public_key,
                case_no=case_no,
                on_moved=take_off_moved,
            )
        self.seal.case_no = case_no

    def command(self, command_id: int) -> CourtCommand:
        with self.session_factory() as session:
            row = session.get(CourtCommand, command_id)
            assert row is not None
            return row

    def answers(self) -> dict[str, int]:
        return {label: n for (kind, label), n in self.metrics.snapshot().commands.items() if kind == "answer"}

    def events(self, type: str) -> int:
        with self.session_factory() as session:
            return int(session.scalar(select(func.count(Event.id)).where(Event.type == type)) or 0)


@pytest.fixture
def world(session_factory: SessionFactory, tmp_path: Any) -> World:
    return World(session_factory, tmp_path / "snapshots")


def test_an_issued_command_is_pending_signed_and_numbered_upwards_per_seal(world: World) -> None:
    ids = [world.issue(), world.issue(CommandAction.PING, device_id="seal-b"), world.issue(CommandAction.ARM)]
    assert ids == sorted(ids) and len(set(ids)) == 3
    row = world.command(ids[0])
    assert (row.state, row.broker_accepted_at, row.answered_at) == ("pending", None, None)
    assert row.expires_at - row.issued_at == timedelta(minutes=10)
    command = check_command(
        row.signed,
        device_id="seal-a",
        case_no=CASE_A,
        server_key=COURT_KEY.verify_key,
        last_accepted_id=0,
        now=utc_now(),
    )
    assert (command.command_id, command.action, command.case_no) == (ids[0], CommandAction.DISARM, CASE_A)
    assert command.issued_at.startswith(row.issued_at.strftime("%Y-%m-%dT%H:%M:%S"))


def test_a_command_the_broker_delivers_after_its_seal_moved_is_refused_in_the_new_case_and_settles_nothing(
    world: World, session_factory: SessionFactory
) -> None:
    """The court signs the case of the seal's binding into the command. The seal is then moved to another case
    (``seal-server seal add --case``: the old binding's pending commands expire), but the broker had already taken
    the disarm for the seal's session: the seal, now guarding case B, refuses those very bytes as ``wrong_case``.
    Its signed refusal is case B's evidence; case A's command stays ``expired``, with no answer: an answer belongs to
    the case its event is stored in (before, A's command took it, and showed A's parties B's number and when the seal
    spoke there)."""
    command_id = world.issue(CommandAction.DISARM)
    world.move_to(CASE_B)
    assert world.command(command_id).state == "expired"
    with pytest.raises(CommandRefused) as refused:
        check_command(
            world.command(command_id).signed,
            device_id="seal-a",
            case_no=world.seal.case_no,
            server_key=COURT_KEY.verify_key,
            last_accepted_id=0,
            now=utc_now(),
        )
    assert (refused.value.reason, refused.value.command_id) == (RejectReason.WRONG_CASE, command_id)

    assert world.reject(command_id, refused.value.reason.value) is Outcome.STORED
    row = world.command(command_id)
    assert (row.state, row.reason, row.case_no) == ("expired", None, CASE_A)
    assert (row.answered_at, row.answer_seq, row.result) == (None, None, None)
    assert world.answers() == {"other_case": 1}
    with session_factory() as session:
        event = session.scalars(select(Event).where(Event.type == "command_rejected")).one()
        assert event.case_no == CASE_B  # the refusal is on the record of the case the seal guards


def test_an_unbound_seal_gets_no_command(world: World, session_factory: SessionFactory) -> None:
    with session_scope(session_factory) as session:
        session.scalars(select(Seal).where(Seal.device_id == "seal-a")).one().case_no = None
    with pytest.raises(Conflict, match="bound to no case"):
        world.issue()


def test_ack_acknowledges_with_the_result_and_the_event(world: World) -> None:
    command_id = world.issue()
    assert world.ack(command_id, result="disarmed") is Outcome.STORED
    row = world.command(command_id)
    assert row.state == "acknowledged"
    assert row.result == {"command_id": command_id, "action": "disarm", "result": "disarmed"}
    assert row.answer_seq == world.seal.seq and row.answered_at is not None and row.reason is None
    assert world.answers() == {"acknowledged": 1}


def test_rejection_records_the_reason(world: World) -> None:
    command_id = world.issue()
    world.reject(command_id, RejectReason.NOT_YET_VALID.value)
    row = world.command(command_id)
    assert (row.state, row.reason) == ("rejected", "not_yet_valid")
    assert world.answers() == {"rejected": 1}


def test_answers_that_fit_no_command_are_stored_and_counted_but_change_nothing(world: World) -> None:
    mine, theirs = world.issue(), world.issue(device_id="seal-b")
    world.ack(mine + theirs + 1000)  # no such command
    world.ack(theirs)  # seal-a answers seal-b's command
    world.ack(mine, action="arm")  # the seal says it did something else
    world.ack(mine, result="armed")  # or that what it did is what another action does
    world.ack(mine)  # or nothing at all
    world.reject(None, "malformed")  # something unreadable was on its cmd topic
    assert world.events("command_ack") == 5 and world.events("command_rejected") == 1
    assert world.command(mine).state == world.command(theirs).state == "pending"
    expected = {"unknown_command": 2, "action_mismatch": 1, "result_mismatch": 2, "unverified": 1}
    assert world.answers() == expected
    text = world.metrics.exposition(seals_online=0, seals_total=2, broker_connected=True, reasons=[])
    assert samples(text)['seal_command_answers_total{outcome="unknown_command"}'] == 2


def test_a_second_answer_keeps_the_first(world: World) -> None:
    """A QoS 1 redelivery of the command reaches the seal twice: ack, then `replayed`."""
    command_id = world.issue()
    world.ack(command_id, result="disarmed")
    world.reject(command_id, RejectReason.REPLAYED.value)
    row = world.command(command_id)
    assert (row.state, row.result and row.result["result"]) == ("acknowledged", "disarmed")
    assert world.answers() == {"acknowledged": 1, "already_final": 1}


def test_an_answer_the_seal_did_not_sign_changes_nothing(world: World) -> None:
    command_id = world.issue()
    forged = world.seal.event(
        EventType.COMMAND_ACK,
        {"command_id": command_id, "action": "disarm", "result": "disarmed"},
        key=generate_signing_key(),
    )
    [result] = world.ingestor.ingest([message(world.seal.event_topic, forged)])
    assert result.outcome is Outcome.QUARANTINED
    assert world.command(command_id).state == "pending" and world.answers() == {}


def test_expiry_then_a_late_answer(world: World, session_factory: SessionFactory) -> None:
    late, answered, fresh = world.issue(), world.issue(), world.issue(ttl=timedelta(hours=1))
    world.ack(answered, result="disarmed")
    with session_scope(session_factory) as session:
        expired = expire_due(session, now=utc_now() + timedelta(minutes=11))
    assert expired == [(late, "seal-a")]
    assert [world.command(i).state for i in (late, answered, fresh)] == ["expired", "acknowledged", "pending"]
    with session_scope(session_factory) as session:
        assert expire_due(session, now=utc_now() + timedelta(minutes=11)) == []
    # The seal executed it before the expiry by its own clock; the ack was waiting in its outbox.
    world.ack(late, result="disarmed")
    assert world.command(late).state == "acknowledged"
    assert world.answers()[AnswerOutcome.ACKNOWLEDGED] == 2
