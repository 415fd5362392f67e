"""Late events: a seal that was offline drains its outbox after being unbound or moved to another case. Each event
goes to the case the seal was bound to when it happened (give or take the clock skew allowance), not to quarantine."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from seal_protocol import EventType
from server.app import create_app
from server.audit.models import AuditEntry
from server.auth.access import Role
from server.core.db import SessionFactory, session_scope
from server.evidence.models import Event
from server.ingest.batch import BINDING_CLOCK_SKEW
from server.ingest.results import Outcome, Reason
from server.seals.models import SealBinding
from server.seals.registry import bind_seal, unbind_seal
from tests.server.auth_helpers import add_user, bearer, make_settings
from tests.server.helpers import CASE_A, CASE_B
from tests.server.ingest_world import Court, make_court

T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=3)
INTRUSION = {"armed": True, "warning": "played", "camera": "ok", "camera_motion": "seen", "snapshots": []}


@pytest.fixture
def court(session_factory: SessionFactory, tmp_path: Path) -> Court:
    return make_court(session_factory, tmp_path)


def unbind_a(court: Court, *, bound_at: datetime, unbound_at: datetime, then_bind_to: str | None = None) -> None:
    """Unbind seal-a from case A, with the binding's history set to [bound_at, unbound_at)."""
    with session_scope(court.session_factory) as session:
        unbind_seal(session, actor=None, device_id="seal-a")
        session.execute(
            update(SealBinding)
            .where(SealBinding.device_id == "seal-a", SealBinding.case_no == CASE_A)
            .values(bound_at=bound_at, unbound_at=unbound_at)
        )
        if then_bind_to is not None:
            bind_seal(session, actor=None, device_id="seal-a", case_no=then_bind_to)


def event_cases(court: Court) -> list[tuple[int, str]]:
    with court.session_factory() as session:
        query = select(Event.seq, Event.case_no).where(Event.device_id == "seal-a").order_by(Event.seq)
        return [(seq, case_no) for seq, case_no in session.execute(query)]


def test_an_unbound_seal_delivers_what_happened_while_bound_to_that_case(court: Court) -> None:
    a = court.a
    intrusion = a.event(EventType.INTRUSION, INTRUSION, at=T0 + timedelta(minutes=30))
    blind = a.event(EventType.CAMERA_BLIND, {"reason": "uniform", "after_ms": 5000}, at=T0 + timedelta(minutes=40))
    skewed = a.event(at=T0 + timedelta(hours=1) + BINDING_CLOCK_SKEW - timedelta(seconds=1))
    after = a.event(at=T0 + timedelta(hours=1) + BINDING_CLOCK_SKEW)
    unbind_a(court, bound_at=T0, unbound_at=T0 + timedelta(hours=1))

    results = court.send(a, intrusion, blind, skewed, after)

    assert [(r.outcome, r.reason) for r in results] == [
        (Outcome.STORED, None),
        (Outcome.STORED, None),
        (Outcome.STORED, None),
        (Outcome.QUARANTINED, Reason.UNBOUND_SEAL),
    ]
    assert event_cases(court) == [(1, CASE_A), (2, CASE_A), (3, CASE_A)]
    # The intrusion concerns the case's judge; the camera of a seal that has left the site does not.
    [alarm] = court.alarms()
    assert (alarm.kind, alarm.case_no, alarm.details["late"]) == ("intrusion", CASE_A, True)


def test_a_seal_moved_to_another_case_delivers_old_events_to_the_old_case(court: Court) -> None:
    a = court.a
    old = a.event(EventType.TAMPER, {"state": "open", "armed": True}, at=T0 + timedelta(minutes=20))
    unbind_a(court, bound_at=T0, unbound_at=T0 + timedelta(hours=1), then_bind_to=CASE_B)
    new = a.event(case_no=CASE_B)
    stray = a.event(case_no=CASE_A)  # now: long after the binding to A ended

    results = court.send(a, old, new, stray)

    assert [(r.outcome, r.reason) for r in results] == [
        (Outcome.STORED, None),
        (Outcome.STORED, None),
        (Outcome.QUARANTINED, Reason.WRONG_CASE),
    ]
    assert event_cases(court) == [(1, CASE_A), (2, CASE_B)]
    tamper, mismatch = court.alarms()
    assert (tamper.kind, tamper.case_no) == ("tamper", CASE_A)
    # The stray, signed now under case A, says the seal still reports as A's: case B hears of it (.case_mismatch)
    assert (mismatch.kind, mismatch.case_no, mismatch.details["claimed_case_no"]) == ("case_mismatch", CASE_B, CASE_A)


def test_an_event_from_before_the_binding_is_refused(court: Court) -> None:
    a = court.a
    early = a.event(at=T0 - BINDING_CLOCK_SKEW - timedelta(seconds=1))
    unbind_a(court, bound_at=T0, unbound_at=T0 + timedelta(hours=1), then_bind_to=CASE_B)

    [result] = court.send(a, early)

    assert (result.outcome, result.reason) == (Outcome.QUARANTINED, Reason.WRONG_CASE)


def test_unbinding_an_armed_seal_is_audited_as_armed(
    court: Court, database_url: str, session_factory: SessionFactory, tmp_path: Path
) -> None:
    court.send(court.a, court.a.event(EventType.HEARTBEAT, {"armed": True}))
    add_user(session_factory, "officer", Role.OFFICER, (CASE_A, CASE_B))
    with TestClient(create_app(make_settings(database_url, tmp_path), with_ingest=False)) as client:
        headers = bearer(session_factory, "officer")
        assert client.delete("/api/seals/seal-a/binding", headers=headers).status_code == 204
        assert client.delete("/api/seals/seal-b/binding", headers=headers).status_code == 204  # never spoke
    with session_factory() as session:
        entries = session.scalars(select(AuditEntry).where(AuditEntry.action == "seal.unbind").order_by(AuditEntry.id))
        assert [(e.target, e.details) for e in entries] == [
            ("seal-a", {"case_no": CASE_A, "armed": True, "note": "unbound by hand"}),
            ("seal-b", {"case_no": CASE_B, "armed": None, "note": "unbound by hand"}),
        ]


def test_a_replay_in_another_case_in_the_same_batch_does_not_move_the_stored_event(court: Court) -> None:
    """Two signed events of one seq in one batch, each valid for its own case (a seal whose outbox was wiped after it
    moved starts again at seq 1 while its old seq 1 is still delivered): the first is stored in the case it names,
    the second is a replay — the second's case check must not decide where the first is stored."""
    a = court.a
    old = a.event(EventType.TAMPER, {"state": "open", "armed": True}, at=T0 + timedelta(minutes=20))
    unbind_a(court, bound_at=T0, unbound_at=T0 + timedelta(hours=1), then_bind_to=CASE_B)
    a.seq, a.prev_hash = 0, None  # the wiped seal starts its chain again, in its new case
    again = a.event(case_no=CASE_B)

    results = court.send(a, old, again)

    assert [(r.outcome, r.reason) for r in results] == [
        (Outcome.STORED, None),
        (Outcome.QUARANTINED, Reason.REPLAYED_SEQ),
    ]
    assert event_cases(court) == [(1, CASE_A)]
    [alarm] = court.alarms("tamper")
    assert alarm.case_no == CASE_A


def test_a_stored_event_delivered_again_after_the_unbinding_is_a_duplicate_whatever_its_clock(court: Court) -> None:
    """A seal whose clock is wrong stores an event while bound (its current binding takes every event it sends); the
    court's receipt is lost, the seal is unbound, and it sends the same bytes again: they are stored already, so a
    duplicate (acknowledged and receipted), not an ``unbound_seal`` refusal the seal would meet for ever. Other bytes
    of that time are still refused."""
    a = court.a
    lost_clock = a.event(EventType.TAMPER, {"state": "open", "armed": True}, at=T0 - timedelta(days=400))
    [first] = court.send(a, lost_clock)
    assert (first.outcome, first.reason) == (Outcome.STORED, None)
    unbind_a(court, bound_at=T0, unbound_at=T0 + timedelta(hours=1))
    other = a.event(at=T0 - timedelta(days=400))

    results = court.send(a, lost_clock, other)

    assert [(r.outcome, r.reason) for r in results] == [
        (Outcome.DUPLICATE, None),
        (Outcome.QUARANTINED, Reason.UNBOUND_SEAL),
    ]
    assert event_cases(court) == [(1, CASE_A)]
