"""A late command answer placed by the hash chain (:mod:`server.ingest.late_chain`): a ``command_ack`` or
``command_rejected`` stamped by a clock two days behind, delivered after the seal moved from case A to case B, is
stored in case A because A's stored seq + 1 names its exact bytes. It is then applied like any answer stored in A:
to a command of case A, never to one of another case (an answer belongs to the case its event is stored in). Before,
the batch raised ``KeyError`` on it and quarantined it as ``internal_error`` for ever."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from seal_protocol import EventType, envelope_hash
from server.auth.access import Role
from server.auth.users import get_user
from server.commands.models import CourtCommand
from server.core.db import SessionFactory, session_scope
from server.ingest.results import Outcome
from tests.server.auth_helpers import add_user
from tests.server.helpers import CASE_A, CASE_B
from tests.server.ingest_world import Court, make_court
from tests.server.test_late_events import event_cases, unbind_a
from tests.server.test_late_events_chain import BEHIND, T0, ingest, outcomes

ACK = {"action": "ping", "result": "pong", "armed": True, "camera": "ok"}
REFUSAL = {"reason": "expired", "detail": "the command's time had passed by the seal's clock"}


@pytest.fixture
def court(session_factory: SessionFactory, tmp_path: Path) -> Court:
    court = make_court(session_factory, tmp_path)
    add_user(session_factory, "judge", Role.JUDGE, (CASE_A, CASE_B))
    return court


def add_command(court: Court, command_id: int, case_no: str) -> None:
    """A ping to seal-a issued in ``case_no``, still pending."""
    now = datetime.now(UTC).replace(microsecond=0)
    with session_scope(court.session_factory) as session:
        session.add(
            CourtCommand(
                id=command_id,
                device_id="seal-a",
                case_no=case_no,
                action="ping",
                args={},
                issued_by=get_user(session, username="judge").id,
                issued_at=now - timedelta(minutes=20),
                expires_at=now + timedelta(minutes=10),
                state="pending",
                signed=b"{}",
                publish_attempts=1,
                updated_at=now,
            )
        )


def command(court: Court, command_id: int) -> tuple[str, int | None]:
    with court.session_factory() as session:
        row = session.execute(select(CourtCommand.state, CourtCommand.answer_seq).where(CourtCommand.id == command_id))
        state, seq = row.one()
        return state, seq


def late_answer_in_a(court: Court, answer_type: EventType, payload: dict[str, Any]) -> bytes:
    """Seq 1 and 3 stored in case A; seq 2, the answer stamped two days behind, held in the outbox while the seal
    moves to case B. Returns seq 2's bytes."""
    a = court.a
    first = a.event(EventType.AGENT_STARTED, {}, at=T0 + timedelta(minutes=10))
    late = a.event(answer_type, payload, at=BEHIND)
    stepped = a.event(
        EventType.CLOCK_STEPPED, {"step_ms": 2 * 86_400_000, "synced": True}, at=T0 + timedelta(minutes=12)
    )
    assert outcomes(court.send(a, first, stepped)) == [(Outcome.STORED, None)] * 2
    unbind_a(court, bound_at=T0, unbound_at=T0 + timedelta(hours=1), then_bind_to=CASE_B)
    return late


@pytest.mark.parametrize(
    ("answer_type", "payload", "state"),
    [(EventType.COMMAND_ACK, ACK, "acknowledged"), (EventType.COMMAND_REJECTED, REFUSAL, "rejected")],
)
def test_a_late_answer_the_chain_places_settles_its_command_of_the_old_case(
    court: Court, answer_type: EventType, payload: dict[str, Any], state: str
) -> None:
    add_command(court, 7, CASE_A)
    late = late_answer_in_a(court, answer_type, {"command_id": 7, **payload})

    results, receipted = ingest(court, (court.a.event_topic, late))

    assert outcomes(results) == [(Outcome.STORED, None)]
    assert (results[0].case_no, results[0].detail) == (CASE_A, f"command 7: {state}")
    assert receipted["seal-a"] == [envelope_hash(late)]
    assert event_cases(court) == [(1, CASE_A), (2, CASE_A), (3, CASE_A)]
    assert court.chain("seal-a").missing == []
    assert command(court, 7) == (state, 2)


@pytest.mark.parametrize(
    ("answer_type", "payload"), [(EventType.COMMAND_ACK, ACK), (EventType.COMMAND_REJECTED, REFUSAL)]
)
def test_a_late_answer_the_chain_places_in_the_old_case_leaves_another_case_s_command(
    court: Court, answer_type: EventType, payload: dict[str, Any]
) -> None:
    """Stored in case A, it is case A's evidence: a command of case B with that id is not settled by it."""
    late = late_answer_in_a(court, answer_type, {"command_id": 8, **payload})
    add_command(court, 8, CASE_B)

    results, receipted = ingest(court, (court.a.event_topic, late))

    assert outcomes(results) == [(Outcome.STORED, None)]
    assert (results[0].case_no, results[0].detail) == (CASE_A, "command 8: other_case")
    assert receipted["seal-a"] == [envelope_hash(late)]
    assert command(court, 8) == ("pending", None)


def test_a_late_answer_in_a_batch_with_other_seals_messages_is_stored_with_them(court: Court) -> None:
    """The batch is applied as one (no fall-back to one message per transaction) and each message has its outcome."""
    add_command(court, 9, CASE_A)
    late = late_answer_in_a(court, EventType.COMMAND_ACK, {"command_id": 9, **ACK})
    b = court.b
    other = b.event(EventType.AGENT_STARTED, {})

    results, _ = ingest(court, (b.event_topic, other), (court.a.event_topic, late))

    assert outcomes(results) == [(Outcome.STORED, None)] * 2
    assert [r.case_no for r in results] == [CASE_B, CASE_A]
    assert command(court, 9) == ("acknowledged", 2)
