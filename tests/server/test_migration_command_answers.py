"""Migration 0017 takes from each command an answer whose event is stored in another case than the command's (its
seal was moved, and answered a copy of the old case's command there): the ingest attached such answers before it
knew better, and they showed the old case's parties what the seal said, and when, while it guarded another case.
Such a command is ``expired`` again, as the move made it; an answer of its own case is kept."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import select

from seal_protocol import EventType
from server.auth.access import Role
from server.auth.users import get_user
from server.commands.models import CourtCommand
from server.core.db import make_engine, make_session_factory, session_scope
from server.evidence.models import Event
from server.migrations.run import current_revision, downgrade, pending_differences, upgrade
from server.seals.registry import register_seal
from tests.server.auth_helpers import add_user
from tests.server.helpers import CASE_A, CASE_B
from tests.server.ingest_world import make_court

#: 0016_status_stamps_bounded: the revision before other cases' answers were taken off commands.
BEFORE = "7c3f9a2e5b18"


def test_an_answer_stored_in_another_case_is_taken_off_its_command(database_url: str, tmp_path: Path) -> None:
    engine = make_engine(database_url)
    try:
        upgrade(engine)
        head = current_revision(engine)
        factory = make_session_factory(engine)
        court = make_court(factory, tmp_path)
        add_user(factory, "judge", Role.JUDGE, (CASE_A,))
        seal = court.a
        court.send(seal, seal.event(EventType.COMMAND_REJECTED, {"command_id": 1, "reason": "expired", "detail": "x"}))
        with session_scope(factory) as session:  # moved to case B, and configured for it
            register_seal(session, actor=None, device_id=seal.device_id, case_no=CASE_B, public_key=seal.public_key)
        seal.case_no = CASE_B
        refusal = {"command_id": 2, "reason": "wrong_case", "detail": f"issued for case {CASE_A}, guarding {CASE_B}"}
        court.send(seal, seal.event(EventType.COMMAND_REJECTED, refusal))
        with factory() as session:
            stored = session.execute(select(Event.seq, Event.case_no).where(Event.device_id == seal.device_id))
            cases = dict(stored.all())
        assert cases == {1: CASE_A, 2: CASE_B}

        downgrade(engine, BEFORE)
        now = datetime.now(UTC).replace(microsecond=0)
        with session_scope(factory) as session:  # as the ingest before the fix settled them
            judge = get_user(session, username="judge")
            for command_id, payload in ((1, {"command_id": 1, "reason": "expired", "detail": "x"}), (2, refusal)):
                session.add(
                    CourtCommand(
                        id=command_id,
                        device_id=seal.device_id,
                        case_no=CASE_A,
                        action="ping",
                        args={},
                        issued_by=judge.id,
                        issued_at=now - timedelta(minutes=20),
                        expires_at=now - timedelta(minutes=10),
                        state="rejected",
                        signed=b"{}",
                        publish_attempts=1,
                        answered_at=now,
                        answer_seq=command_id,
                        result=payload,
                        reason=str(payload["reason"]),
                        updated_at=now,
                    )
                )

        upgrade(engine)

        assert current_revision(engine) == head
        assert pending_differences(engine) == []
        with factory() as session:
            own, other = session.scalars(select(CourtCommand).order_by(CourtCommand.id)).all()
        assert (own.state, own.answer_seq, own.reason, own.result) == ("rejected", 1, "expired", own.result)
        assert own.answered_at is not None and own.result is not None
        assert (other.state, other.answered_at, other.answer_seq, other.result, other.reason) == (
            "expired",
            None,
            None,
            None,
            None,
        )
        assert other.updated_at >= now
    finally:
        engine.dispose()
