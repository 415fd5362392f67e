"""A seal configured with another case number than its binding (a typo: ``2021苏0214执1234号`` without its
parentheses, ``1243`` for ``1234``) has every signed event refused as ``wrong_case`` — an intrusion too. The court
raises ``case_mismatch`` in the case the seal is bound to, so that the judge learns the seal reports into no case:
once, folding every later refusal, closed when the seal's events are stored in its case again. Not for a moved
seal's late events (stored in their old case), nor for a message the seal's key did not sign."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from seal_protocol import EventType
from seal_protocol.signing import generate_signing_key
from server.alarms.service import acknowledge_alarm
from server.core.db import SessionFactory, session_scope
from server.ingest.batch import BINDING_CLOCK_SKEW
from server.ingest.results import Outcome, Reason
from tests.server.helpers import CASE_A, CASE_B
from tests.server.ingest_world import Court, make_court
from tests.server.test_late_events import event_cases, unbind_a

TYPO = "2021苏0214执1234号"  # CASE_A without its parentheses
DIGITS = "(2021)苏0214执1243号"  # CASE_A with two digits swapped: any check of the form accepts it
INTRUSION = {"armed": True, "warning": "played", "camera": "ok", "camera_motion": "seen", "snapshots": []}
TAMPER = {"state": "open", "armed": True}
T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=3)


@pytest.fixture
def court(session_factory: SessionFactory, tmp_path: Path) -> Court:
    return make_court(session_factory, tmp_path)


def _mismatch(court: Court) -> list[tuple[str, str, str, int]]:
    return [(a.case_no, a.severity, a.state, a.count) for a in court.alarms("case_mismatch")]


@pytest.mark.parametrize("claimed", [TYPO, DIGITS])
def test_a_signed_intrusion_under_a_mistyped_case_number_alarms_the_seals_case(court: Court, claimed: str) -> None:
    a = court.a
    results = court.send(
        a, a.event(EventType.AGENT_STARTED, case_no=claimed), a.event(EventType.INTRUSION, INTRUSION, case_no=claimed)
    )

    assert [(r.outcome, r.reason) for r in results] == [(Outcome.QUARANTINED, Reason.WRONG_CASE)] * 2
    assert court.seqs("seal-a") == []  # nothing reaches the case log: the alarm is how the judge learns of it
    [alarm] = court.alarms()
    assert (alarm.kind, alarm.case_no, alarm.severity, alarm.state, alarm.count) == (
        "case_mismatch", CASE_A, "high", "open", 2,
    )  # fmt: skip
    assert alarm.details["claimed_case_no"] == claimed
    assert (alarm.details["event_type"], alarm.details["seq"]) == ("intrusion", 2)
    intrusions = alarm.details["intrusions"]
    assert (intrusions["count"], intrusions["seqs"]) == (1, [2])
    assert intrusions["last"]["event_type"] == "intrusion" and intrusions["last"]["claimed_case_no"] == claimed


def test_a_flood_of_refused_events_folds_into_one_alarm_that_keeps_the_intrusion(court: Court) -> None:
    a = court.a
    intrusion = a.event(EventType.INTRUSION, INTRUSION, case_no=TYPO)
    court.send(a, intrusion)
    for _ in range(20):  # ~17 a batch, as the ingest takes them
        court.send(a, *(a.event(case_no=TYPO) for _ in range(17)))
    court.send(a, intrusion)  # never receipted: the seal sends it again
    tamper = a.event(EventType.TAMPER, TAMPER, case_no=TYPO)
    court.send(a, tamper, a.event(case_no=TYPO))

    assert _mismatch(court) == [(CASE_A, "high", "open", 1 + 20 * 17 + 1 + 2)]
    [alarm] = court.alarms()
    assert alarm.details["event_type"] == "heartbeat"  # the last refused event; the intrusions are kept apart
    intrusions = alarm.details["intrusions"]
    assert (intrusions["count"], intrusions["seqs"]) == (2, [1, 20 * 17 + 2])  # the copy counted once
    assert intrusions["last"]["event_type"] == "tamper"


def test_the_seals_events_stored_in_its_case_again_close_it(court: Court) -> None:
    a = court.a
    court.send(a, a.event(EventType.INTRUSION, INTRUSION, case_no=TYPO))
    court.send(court.b, court.b.event())  # another seal's event closes nothing of seal-a
    assert _mismatch(court) == [(CASE_A, "high", "open", 1)]

    [result] = court.send(a, a.event())  # reconfigured: its case number is CASE_A again
    assert result.outcome is Outcome.STORED
    [alarm] = court.alarms("case_mismatch")
    assert alarm.state == "closed" and alarm.closed_by is None
    assert alarm.closed_note == f"system: event seq 2 stored in case {CASE_A}"

    court.send(a, a.event(case_no=DIGITS))  # mistyped again: a new alarm
    assert [state for _, _, state, _ in _mismatch(court)] == ["closed", "open"]


def test_a_new_intrusion_after_the_alarm_was_acknowledged_opens_a_new_one(court: Court) -> None:
    a = court.a
    intrusion = a.event(EventType.INTRUSION, INTRUSION, case_no=TYPO)
    court.send(a, intrusion)
    [alarm] = court.alarms("case_mismatch")
    with session_scope(court.session_factory) as session:
        acknowledge_alarm(session, alarm_id=alarm.id, user_id=1, note="the officer will fix the seal")

    court.send(a, intrusion, a.event(case_no=TYPO))  # its copy and a heartbeat: what the judge already knows
    assert [(state, count) for _, _, state, count in _mismatch(court)] == [("acknowledged", 3)]

    court.send(a, a.event(EventType.INTRUSION, INTRUSION, case_no=TYPO))  # someone is in the sealed premises again
    old, new = court.alarms("case_mismatch")
    assert (old.state, old.closed_note) == (
        "closed",
        f"system: a new intrusion (seq 3) under case number {TYPO!r}: a new alarm",
    )
    assert (new.state, new.count, new.case_no) == ("open", 1, CASE_A)
    assert (new.details["intrusions"]["count"], new.details["intrusions"]["seqs"]) == (2, [1, 3])


def test_a_moved_seals_late_events_stored_in_their_old_case_raise_nothing(court: Court) -> None:
    a = court.a
    before = a.event(EventType.TAMPER, TAMPER, at=T0 - BINDING_CLOCK_SKEW - timedelta(hours=1))  # its clock behind
    within = a.event(EventType.INTRUSION, INTRUSION, at=T0 + timedelta(minutes=20))
    unbind_a(court, bound_at=T0, unbound_at=T0 + timedelta(hours=1), then_bind_to=CASE_B)
    assert court.send(a, a.event(case_no=CASE_B, seq=3))[0].outcome is Outcome.STORED  # reconfigured for B

    # Within the old binding by its time; then the one before it, placed by the chain (its successor names it).
    results = court.send(a, within) + court.send(a, before)

    assert [(r.outcome, r.case_no) for r in results] == [(Outcome.STORED, CASE_A), (Outcome.STORED, CASE_A)]
    assert event_cases(court) == [(1, CASE_A), (2, CASE_A), (3, CASE_B)]
    assert court.alarms("case_mismatch") == []
    late = [(alarm.kind, alarm.case_no) for alarm in court.alarms() if alarm.details.get("late")]
    assert sorted(late) == [("intrusion", CASE_A), ("tamper", CASE_A)]  # what happened there concerns A's judge


def test_a_moved_seal_still_configured_for_its_old_case_alarms_the_new_one(court: Court) -> None:
    a = court.a
    unbind_a(court, bound_at=T0, unbound_at=T0 + timedelta(hours=1), then_bind_to=CASE_B)

    [result] = court.send(a, a.event(EventType.INTRUSION, INTRUSION, case_no=CASE_A))  # now, at B's premises

    assert (result.outcome, result.reason) == (Outcome.QUARANTINED, Reason.WRONG_CASE)
    assert _mismatch(court) == [(CASE_B, "high", "open", 1)]
    assert court.alarms("case_mismatch")[0].details["claimed_case_no"] == CASE_A


def test_a_reconfigured_seal_sending_its_old_refused_events_again_does_not_reopen_it(court: Court) -> None:
    """Moved to B, a heartbeat sent before the technician changed its case number (refused: the alarm), then its
    events stored in B (closed). The refused heartbeat is never receipted: the seal sends it again and again, with
    back-off. An event older than the seal's newest stored one is no news: it opened a new alarm each time (and its
    notifications), for good."""
    a = court.a
    unbind_a(court, bound_at=T0, unbound_at=T0 + timedelta(hours=1), then_bind_to=CASE_B)
    stale = a.event(case_no=CASE_A)
    court.send(a, stale)
    assert _mismatch(court) == [(CASE_B, "high", "open", 1)]
    [stored] = court.send(a, a.event(case_no=CASE_B))  # reconfigured
    assert stored.outcome is Outcome.STORED and _mismatch(court) == [(CASE_B, "high", "closed", 1)]
    for _ in range(3):
        [again] = court.send(a, stale)
        assert (again.outcome, again.reason) == (Outcome.QUARANTINED, Reason.WRONG_CASE)
        court.send(a, a.event(case_no=CASE_B))
    assert _mismatch(court) == [(CASE_B, "high", "closed", 1)]


def test_a_forged_or_unbound_message_raises_nothing(court: Court) -> None:
    a = court.a
    forged = a.event(EventType.INTRUSION, INTRUSION, case_no=TYPO, key=generate_signing_key())
    [result] = court.send(a, forged)
    assert (result.outcome, result.reason) == (Outcome.QUARANTINED, Reason.BAD_SIGNATURE)
    assert court.alarms() == []

    unbind_a(court, bound_at=T0, unbound_at=T0 + timedelta(hours=1))  # in stock: no case to tell
    [result] = court.send(a, a.event(EventType.INTRUSION, INTRUSION, case_no=TYPO))
    assert (result.outcome, result.reason) == (Outcome.QUARANTINED, Reason.UNBOUND_SEAL)
    assert court.alarms() == []
