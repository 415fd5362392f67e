"""The web's writers and the ingest lock the rows they share in one order on PostgreSQL, so neither waits for the
other in a circle (a deadlock, which PostgreSQL breaks by failing one of them: the ingest tries its batch again, a
person's action ends on an error page). Each test interleaves two real transactions, a third one (the pin) holding
one of them between two of its steps while the other takes its own locks."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select, text

from seal_protocol import EventType
from seal_protocol.commands import CommandAction
from seal_protocol.signing import generate_signing_key
from server.app import LOST_RACE_TEXT, create_app
from server.auth.access import Role
from server.auth.login import SignedIn, sign_in
from server.auth.users import get_user
from server.commands.dispatcher import CommandDispatcher
from server.commands.models import CourtCommand
from server.commands.service import issue_command
from server.commands.state import CommandState
from server.config import AuthSettings, CommandSettings, MqttSettings
from server.core.base import utc_now
from server.core.db import SessionFactory, make_session_factory, session_scope
from server.core.metrics import IngestMetrics
from server.errors import Conflict
from server.evidence.log import lock_log
from server.evidence.models import Event
from server.ingest.ingestor import Ingestor
from server.ingest.results import Outcome
from server.notices.service import Revocation
from server.removal.lifting import abort_request
from server.removal.release import release_seal
from server.removal.steps import get_request
from server.seals.models import Seal, SealBinding
from server.seals.registry import register_seal
from tests.agent.helpers import wait_until
from tests.server.auth_helpers import PASSWORD, add_user, make_settings
from tests.server.helpers import CASE_A, CASE_B, SimulatedSeal, add_test_case, message, register
from tests.server.pg_locks import Side, failed_batches, lock_waits, wait_for_lock_waits
from tests.server.removal_world import RemovalWorld, make_world
from tests.server.test_ingest_races import _lose_races

COURT_KEY = generate_signing_key()
#: A case whose number sorts before CASE_A's and CASE_B's.
FIRST_CASE = "(2020)苏0214执1号"
_TTL = timedelta(minutes=10)


def _issue(factory: SessionFactory, device_id: str, action: CommandAction, ttl: timedelta = _TTL) -> int:
    with session_scope(factory) as session:
        seal = session.scalars(select(Seal).where(Seal.device_id == device_id)).one()
        user = get_user(session, username="clerk")
        row = issue_command(
            session,
            seal=seal,
            action=action,
            args={},
            key=COURT_KEY,
            ttl=ttl,
            user=user,
            now=utc_now(),
        )
        return row.id


def _armed_seal(
    session_factory: SessionFactory, pg_engine: Engine, tmp_path: Path
) -> tuple[SimulatedSeal, SessionFactory, Ingestor]:
    """seal-a bound to case A, armed as its first event (stored) says, and the clerk who sends it commands; sessions
    and an ingest on ``pg_engine``'s connections."""
    seal = SimulatedSeal("seal-a", CASE_A)
    register(session_factory, seal)
    add_user(session_factory, "clerk", Role.CLERK)
    factory = make_session_factory(pg_engine)
    ingestor = Ingestor(factory, metrics=IngestMetrics(), snapshot_dir=tmp_path / "snapshots")
    ingestor.ingest([message(seal.event_topic, seal.event(EventType.HEARTBEAT, {"armed": True}))])
    return seal, factory, ingestor


#: Where the pin stops the clerk's unbinding: between the case and the seal (it holds the seal's row), or between the
#: seal and the commands (it holds the clerk's row, which the unbinding's rows refer to: the binding's unbound_by).
PINS = {
    "before the seal": "SELECT 1 FROM seals WHERE device_id = 'seal-a' FOR NO KEY UPDATE",
    "before the commands": "SELECT 1 FROM users WHERE username = 'clerk' FOR UPDATE",
}


@pytest.mark.parametrize("pin_sql", PINS.values(), ids=PINS.keys())
def test_unbinding_a_seal_while_its_answer_to_a_command_is_ingested_does_not_deadlock(
    pg_engine: Engine, session_factory: SessionFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture, pin_sql: str
) -> None:
    """The clerk's unbinding (``DELETE /api/seals/{id}/binding``: :func:`release_seal`) locks the case, the seal,
    then the seal's pending commands, to expire them. The ingest of the seal's ``command_ack`` locked the command
    (to acknowledge it) before its insert of the event, whose foreign keys take a key-share lock on the case and the
    seal, and before it updates the seal's row. Before: the case was locked FOR UPDATE, which waits for key-share
    locks (stopped before the seal, the clerk held it), and the ingest locked the command before the seal (stopped
    before the commands, the clerk held the seal): each waited for the other, and PostgreSQL failed the ingest's
    batch, which then tried again — or the clerk's action, an error page."""
    seal, factory, ingestor = _armed_seal(session_factory, pg_engine, tmp_path)
    command_id = _issue(factory, "seal-a", CommandAction.DISARM)
    payload = {"command_id": command_id, "action": "disarm", "result": "disarmed"}
    ack = message(seal.event_topic, seal.event(EventType.COMMAND_ACK, payload))

    def unbind() -> None:
        with session_scope(factory) as session:
            clerk = get_user(session, username="clerk")
            release_seal(session, actor=clerk, device_id="seal-a", now=utc_now(), reason=Revocation.UNBOUND)

    with caplog.at_level(logging.INFO, logger="server.ingest.ingestor"), pg_engine.connect() as pin:
        pin.execute(text(pin_sql))
        clerk = Side(unbind)
        wait_for_lock_waits(pg_engine, 1)  # the clerk holds the case (and the seal) and waits for the pin
        ingest = Side(lambda: ingestor.ingest([ack]))
        wait_for_lock_waits(pg_engine, 2)  # the ingest waits too (before: holding the command)
        pin.rollback()
        clerk.join()
        [result] = ingest.join()

    assert result.outcome is Outcome.STORED, result
    assert failed_batches(caplog) == []
    with factory() as session:
        command = session.get(CourtCommand, command_id)
        assert command is not None and command.state == CommandState.ACKNOWLEDGED  # maybe expired first
        assert session.scalar(select(Seal.case_no).where(Seal.device_id == "seal-a")) is None
        assert len(session.scalars(select(Event.id)).all()) == 2


@pytest.fixture
def world(
    pg_engine: Engine, database_url: str, session_factory: SessionFactory, tmp_path: Path
) -> Iterator[RemovalWorld]:
    with TestClient(create_app(make_settings(database_url, tmp_path), with_ingest=False)) as client:
        yield make_world(session_factory, tmp_path, client)


def test_withdrawing_an_approval_while_a_seal_acknowledges_its_disarm_does_not_deadlock(
    world: RemovalWorld, pg_engine: Engine, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The judge's withdrawal (``POST /api/removal-requests/{id}/abort``) withdraws the disarms still pending, then
    sends each seal an ``arm``, locking the seal's row; the ingest of a seal's ``command_ack`` of its disarm locks its
    seal's row, then the command. Before, the withdrawal locked the commands first: stopped between the two (the pin
    holds the judge's row, which the withdrawal's audit entries refer to), it held the disarm the ingest waited for,
    then waited for the seal the ingest held."""
    request_id = world.filed()
    disarms = world.commands(world.approved(request_id))
    factory = make_session_factory(pg_engine)
    ingestor = Ingestor(factory, metrics=IngestMetrics(), snapshot_dir=tmp_path / "snapshots")
    seal = world.seals["seal-a1"]
    disarm = disarms["seal-a1"].id
    payload = {"command_id": disarm, "action": "disarm", "result": "disarmed"}
    ack = message(seal.event_topic, seal.event(EventType.COMMAND_ACK, payload))

    def withdraw() -> None:
        with session_scope(factory) as session:
            judge = get_user(session, username="judge")
            request = get_request(session, request_id=request_id, for_update=True)
            reasons = "撤回批准。Approval withdrawn."
            abort_request(
                session, actor=judge, request=request, reasons=reasons, key=COURT_KEY, ttl=_TTL, now=utc_now()
            )

    with caplog.at_level(logging.INFO, logger="server.ingest.ingestor"), pg_engine.connect() as pin:
        pin.execute(text("SELECT 1 FROM users WHERE username = 'judge' FOR UPDATE"))
        judge = Side(withdraw)
        wait_for_lock_waits(pg_engine, 1)  # the judge holds the disarms (now: and the seals) and waits for the pin
        ingest = Side(lambda: ingestor.ingest([ack]))
        wait_for_lock_waits(pg_engine, 2)  # the ingest waits too (before: holding the seal)
        pin.rollback()
        judge.join()
        [result] = ingest.join()

    assert result.outcome is Outcome.STORED, result
    assert failed_batches(caplog) == []
    with factory() as session:
        states = dict(
            session.execute(
                select(CourtCommand.action, CourtCommand.state).where(CourtCommand.device_id == "seal-a1")
            ).all()
        )
    assert states == {"disarm": CommandState.ACKNOWLEDGED, "arm": CommandState.PENDING}  # withdrawn, then answered


def test_an_action_that_loses_a_race_is_answered_503_try_again_and_changes_nothing(
    world: RemovalWorld, engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    """PostgreSQL breaks a deadlock (or a serialization failure) by failing one transaction; when that is a person's
    action, they are told to try again (before: a bare 500 Internal Server Error). The database here fails the
    unbinding's audit entry once with deadlock_detected, as it would the loser of a deadlock."""
    _lose_races(engine, "40P01", times=1, table="audit_log")
    unbind = "/api/seals/seal-b/binding"

    with caplog.at_level(logging.WARNING, logger="server.app"):
        refused = world.client.delete(unbind, headers=world.as_("clerk"))

    assert refused.status_code == 503, refused.text
    assert refused.headers["Retry-After"] == "1"
    assert refused.json()["detail"] == LOST_RACE_TEXT
    assert any("lost a race" in r.getMessage() for r in caplog.records)
    with world.session_factory() as session:
        assert session.scalar(select(Seal.case_no).where(Seal.device_id == "seal-b")) is not None  # nothing kept
    again = world.client.delete(unbind, headers=world.as_("clerk"))
    assert again.status_code == 204, again.text


def _move(factory: SessionFactory, seal: SimulatedSeal, to: str) -> None:
    """Register ``seal`` (bound) to the case ``to``: it moves there."""
    with session_scope(factory) as session:
        register_seal(session, actor=None, device_id=seal.device_id, case_no=to, public_key=seal.public_key)


def test_two_registrations_moving_seals_between_two_cases_in_opposite_directions_do_not_deadlock(
    pg_engine: Engine, session_factory: SessionFactory
) -> None:
    """Registering a bound seal to another case (``seal-server seal add`` / ``POST /api/seals`` with a case) moves
    it: both cases' seals change, so both case rows are locked. Before, the new case was locked first, then the
    seal's old one: seal-a moving from A to B and seal-b from B to A locked the two cases in opposite orders. The pin
    holds seal-a's row, which the first registration writes between its two cases; the second one then takes its
    new case, and each waited for the other's."""
    seal_a, seal_b = SimulatedSeal("seal-a", CASE_A), SimulatedSeal("seal-b", CASE_B)
    register(session_factory, seal_a, seal_b)
    factory = make_session_factory(pg_engine)

    with pg_engine.connect() as pin:
        pin.execute(text("SELECT 1 FROM seals WHERE device_id = 'seal-a' FOR NO KEY UPDATE"))
        first = Side(lambda: _move(factory, seal_a, CASE_B))
        wait_for_lock_waits(pg_engine, 1)  # it holds both cases (before: case B only) and waits for seal-a
        second = Side(lambda: _move(factory, seal_b, CASE_A))
        wait_for_lock_waits(pg_engine, 2)  # it waits for a case (before: holding case A)
        pin.rollback()
        first.join()
        second.join()

    with factory() as session:
        assert dict(session.execute(select(Seal.device_id, Seal.case_no)).all()) == {
            "seal-a": CASE_B,
            "seal-b": CASE_A,
        }
        open_bindings = select(SealBinding.device_id, SealBinding.case_no).where(SealBinding.unbound_at.is_(None))
        assert sorted(session.execute(open_bindings).all()) == [("seal-a", CASE_B), ("seal-b", CASE_A)]


def test_a_registration_that_finds_its_seal_moved_meanwhile_is_refused_and_moves_nothing(
    pg_engine: Engine, session_factory: SessionFactory
) -> None:
    """A registration locks the case the seal leaves as it read it before any lock (cases come before seals);
    should another registration move the seal in between, the seal's row, locked last, names another case: the
    registration is refused (look again), as an unbinding is in that race, rather than taking the seal from a case
    it would then lock out of order."""
    seal = SimulatedSeal("seal-a", CASE_A)
    register(session_factory, seal)
    with session_scope(session_factory) as session:
        add_test_case(session, FIRST_CASE)  # first in case_no order: locked before the seal's case
        add_test_case(session, CASE_B)
    factory = make_session_factory(pg_engine)

    with pg_engine.connect() as pin:
        pin.execute(text("SELECT 1 FROM cases WHERE case_no = :case_no FOR NO KEY UPDATE"), {"case_no": FIRST_CASE})
        late = Side(lambda: _move(factory, seal, FIRST_CASE))
        wait_for_lock_waits(pg_engine, 1)  # it read seal-a in case A and waits for the first case
        _move(session_factory, seal, CASE_B)  # another registration moves seal-a meanwhile
        pin.rollback()
        with pytest.raises(Conflict, match="moved meanwhile"):
            late.join()

    with factory() as session:
        assert session.scalar(select(Seal.case_no).where(Seal.device_id == "seal-a")) == CASE_B
        open_bindings = select(SealBinding.case_no).where(SealBinding.unbound_at.is_(None))
        assert session.scalars(open_bindings).all() == [CASE_B]


#: How the dispatcher's round comes to expire command 1 (issued first: the lower id) besides command 2 (expired by
#: its time): by its time too, though it was written since (the broker accepted it: its row is newer, and expires
#: later) — or because its seal was moved to another case before command 2 was issued for the new one.
EXPIRING = ["due", "moved"]


@pytest.mark.parametrize("how", EXPIRING)
def test_the_dispatcher_expiring_commands_while_a_batch_answers_them_does_not_deadlock(
    pg_engine: Engine, session_factory: SessionFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture, how: str
) -> None:
    """An ingest batch applies the answers of its seals' commands in id order (whatever their order in the batch,
    reversed here). Before, the dispatcher's round locked the commands it expired in no order of theirs: one
    ``UPDATE`` of the commands past their expiry, in the order the table or its (state, expires_at) index happened
    to hold them, then the pending commands of moved seals, in the same transaction. Command 2 first, then command
    1: the pin holds command 2 while the dispatcher waits for it, and the batch locks command 1 and queues behind;
    each then waited for the other's."""
    seal, factory, ingestor = _armed_seal(session_factory, pg_engine, tmp_path)
    first = _issue(factory, "seal-a", CommandAction.DISARM)
    if how == "moved":
        with session_scope(session_factory) as session:
            add_test_case(session, CASE_B)
        _move(factory, seal, CASE_B)
        seal.case_no = CASE_B
    second = _issue(factory, "seal-a", CommandAction.ARM, ttl=_TTL / 2)
    with factory.begin() as session:  # the broker accepted command 1 after command 2 was issued
        session.execute(text("UPDATE commands SET publish_attempts = 1 WHERE id = :id"), {"id": first})
    dispatcher = CommandDispatcher(
        MqttSettings(password_file=tmp_path / "unused"),
        CommandSettings(),
        factory,
        clock=lambda: utc_now() + (_TTL if how == "due" else _TTL / 2) + timedelta(minutes=1),
    )
    answers = [
        message(seal.event_topic, seal.event(EventType.COMMAND_ACK, {"command_id": n, "action": a, "result": r}))
        for n, a, r in ((second, "arm", "armed"), (first, "disarm", "disarmed"))
    ]

    with caplog.at_level(logging.INFO, logger="server.ingest.ingestor"), pg_engine.connect() as pin:
        pin.execute(text("SELECT 1 FROM commands WHERE id = :id FOR NO KEY UPDATE"), {"id": second})
        expiring = Side(dispatcher.run_round)  # not connected: the round only expires
        wait_for_lock_waits(pg_engine, 1)  # it waits for command 2 (now: holding command 1, if due)
        ingest = Side(lambda: ingestor.ingest(answers))
        wait_for_lock_waits(pg_engine, 2)  # the batch waits too (before: holding command 1)
        pin.rollback()
        expired = expiring.join().expired
        results = ingest.join()

    # Moved: command 1 is expired too when the round reaches it before the batch's answer (the round now takes the
    # seal's row before the commands, as the batch does, so which comes first is the scheduler's); either way no
    # deadlock, both answers stored. Both are acknowledged at the end — but, moved, command 1 is case A's and its
    # ack is stored in case B: it settles nothing (an answer belongs to the case its event is stored in).
    assert expired == [first, second] if how == "due" else expired in ([second], [second, first])
    assert [r.outcome for r in results] == [Outcome.STORED, Outcome.STORED], results
    assert failed_batches(caplog) == []
    with factory() as session:
        states = dict(
            session.execute(
                select(CourtCommand.id, CourtCommand.state).where(CourtCommand.id.in_([first, second]))
            ).all()
        )
    assert states[second] == CommandState.ACKNOWLEDGED  # expired first, or not
    if how == "due":
        assert states[first] == CommandState.ACKNOWLEDGED
    else:  # left pending (its expiry is not due at the round's clock) or expired by the round
        assert states[first] in (CommandState.PENDING, CommandState.EXPIRED)


def test_a_user_s_action_does_not_wait_for_their_sign_in_elsewhere(
    pg_engine: Engine, session_factory: SessionFactory
) -> None:
    """Signing in locks the user's row until the session is issued, so that the account disabled or the password
    changed meanwhile stops it. Before, ``FOR UPDATE``: it held off every row inserted meanwhile that names the user
    too — here the clerk's unbinding elsewhere (its binding's ``unbound_by``, its audit entry), which holds the case
    and the seal the ingest waits for. The pin holds the log's lock, where the sign-in waits at its commit."""
    register(session_factory, SimulatedSeal("seal-a", CASE_A))
    add_user(session_factory, "clerk", Role.CLERK)
    factory = make_session_factory(pg_engine)

    def sign_in_clerk() -> SignedIn:
        with factory() as session:
            return sign_in(session, username="clerk", password=PASSWORD, ip="203.0.113.9", settings=AuthSettings())

    def unbind() -> None:  # not committed: its commit would wait for the pin, as any writer's
        with factory() as session:
            clerk = get_user(session, username="clerk")
            release_seal(session, actor=clerk, device_id="seal-a", now=utc_now(), reason=Revocation.UNBOUND)
            session.flush()

    with factory() as pin:
        lock_log(pin)
        signing_in = Side(sign_in_clerk)
        wait_for_lock_waits(pg_engine, 1)  # it holds the clerk's row and waits for the log
        unbinding = Side(unbind)
        assert wait_until(lambda: unbinding.finished or lock_waits(pg_engine) == 2, 10)
        assert unbinding.finished, "the unbinding waits for the clerk's sign-in"
        pin.rollback()
        unbinding.join()
        assert signing_in.join().user.username == "clerk"
