"""The removal request's one transition function, against its rules written out by hand (not copied from the
implementation's table): every allowed move, and every other (state, action) refused naming the current state."""

from __future__ import annotations

import pytest

from server.errors import Conflict
from server.removal.errors import IllegalTransition
from server.removal.state import OPEN_STATES, RemovalAction, RemovalState, allowed_actions, transition

S, A = RemovalState, RemovalAction
ALLOWED = {
    (S.SUBMITTED, A.REVIEW): S.UNDER_REVIEW,
    (S.SUBMITTED, A.COMMENT): S.SUBMITTED,
    (S.SUBMITTED, A.CANCEL): S.CANCELLED,
    (S.UNDER_REVIEW, A.COMMENT): S.UNDER_REVIEW,
    (S.UNDER_REVIEW, A.CANCEL): S.CANCELLED,
    (S.UNDER_REVIEW, A.APPROVE): S.APPROVED,
    (S.UNDER_REVIEW, A.REJECT): S.REJECTED,
    (S.APPROVED, A.ISSUE_DISARM): S.DISARM_PENDING,
    (S.DISARM_PENDING, A.RESEND_DISARM): S.DISARM_PENDING,
    (S.DISARM_PENDING, A.LIFT_WITHOUT_ACK): S.DISARM_PENDING,  # a seal that never answers: the judge decides
    (S.DISARM_PENDING, A.CONFIRM_DISARMED): S.DISARMED,
    (S.DISARM_PENDING, A.ABORT): S.ABORTED,
    (S.DISARMED, A.LIFT): S.LIFTED,
    (S.DISARMED, A.RESEND_DISARM): S.DISARM_PENDING,  # a seal says it is armed again
    (S.DISARMED, A.ARMED_AGAIN): S.DISARM_PENDING,  # the server: a seal's signed word says so, before anyone acts
    (S.DISARMED, A.ABORT): S.ABORTED,
}


@pytest.mark.parametrize("state", list(S))
@pytest.mark.parametrize("action", list(A))
def test_transition(state: RemovalState, action: RemovalAction) -> None:
    if (state, action) in ALLOWED:
        assert transition(state.value, action) is ALLOWED[state, action]
        return
    with pytest.raises(IllegalTransition) as refused:
        transition(state, action)
    assert isinstance(refused.value, Conflict)  # the API's 409
    assert (refused.value.state, refused.value.action) == (state.value, action.value)
    assert f"is {state.value}" in str(refused.value)


def test_final_and_open_states() -> None:
    assert {s for s in S if s.is_final} == {S.REJECTED, S.CANCELLED, S.LIFTED, S.ABORTED}
    assert OPEN_STATES == set(S) - {S.REJECTED, S.CANCELLED, S.LIFTED, S.ABORTED}
    assert {s for s in S if not s.is_decided} == {S.SUBMITTED, S.UNDER_REVIEW}


def test_allowed_actions_are_what_the_rules_allow() -> None:
    for state in S:
        assert set(allowed_actions(state)) == {action for (s, action) in ALLOWED if s is state}


def test_the_debtor_cancels_only_before_a_decision() -> None:
    assert {s for (s, action) in ALLOWED if action is A.CANCEL} == {S.SUBMITTED, S.UNDER_REVIEW}


def test_a_stuck_disarm_has_a_way_out_and_it_is_the_judge_s() -> None:
    """A seal that never acknowledges must not leave a request open for ever: from disarm_pending the judge can go
    without its acknowledgement, or withdraw the approval."""
    out_of_pending = {action for (s, action) in ALLOWED if s is S.DISARM_PENDING}
    assert {A.LIFT_WITHOUT_ACK, A.ABORT} <= out_of_pending
