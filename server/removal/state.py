"""A removal request's life, through one pure function: :func:`transition` (state, action) → state.

::

    submitted ──review──▶ under_review ──approve──▶ approved ──issue_disarm──▶ disarm_pending ◀─┐ resend_disarm,
        │                    │    └──reject──▶ rejected                          │   │    └────┘ lift_without_ack
        └──────cancel────────┴──▶ cancelled                    confirm_disarmed  ▼   └──abort──▶ aborted
                                                      lifted ◀──lift── disarmed ──abort──▶ aborted
                                                                   resend_disarm, armed_again
                                                                          └──────▶ disarm_pending

- ``submitted``: the debtor filed it; the creditor is told and may give a written view (``comment``).
- ``under_review``: the case's judge has taken it up; views are still taken until the decision.
- ``approved`` → ``disarm_pending`` happen together: approving issues the signed ``disarm`` to every seal of the
  case. ``resend_disarm`` (a seal that was offline past the command's expiry) keeps it ``disarm_pending``.
- ``lift_without_ack``: the judge decides, with reasons, that a seal which does not answer (stolen, broken, its
  battery dead) is lifted without its acknowledgement; the request stays ``disarm_pending`` until every other seal
  has acknowledged.
- ``disarmed``: each seal's signed ``command_ack`` arrived (or the judge decided to go without it). A seal whose
  signed word afterwards says it is no longer disarmed (an event saying it is armed again) sends the request back:
  the server's ``armed_again`` (:func:`server.removal.disarm.settle`) → ``disarm_pending``, the judge and the
  officers told; it then needs a new disarm (``resend_disarm``).
- ``lifted``: an officer confirmed the removal on site.
- ``abort``: the judge withdraws the approval, with reasons; the seals are sent a signed ``arm`` and the seizure
  stands (the case is ``sealed`` again).
- ``cancelled`` (by the debtor, before a decision), ``rejected``, ``aborted`` and ``lifted`` are final.

An action the current state does not allow raises :class:`~server.removal.errors.IllegalTransition` (409).
"""

from __future__ import annotations

from enum import StrEnum

from server.errors import Said
from server.removal.errors import IllegalTransition


class RemovalState(StrEnum):
    SUBMITTED = "submitted"
    UNDER_REVIEW = "under_review"
    APPROVED = "approved"
    REJECTED = "rejected"
    CANCELLED = "cancelled"
    DISARM_PENDING = "disarm_pending"
    DISARMED = "disarmed"
    LIFTED = "lifted"
    ABORTED = "aborted"

    @property
    def is_final(self) -> bool:
        return not _TABLE[self]

    @property
    def is_decided(self) -> bool:
        """The judge has decided (or the debtor withdrew): no more views, no cancelling."""
        return self not in (RemovalState.SUBMITTED, RemovalState.UNDER_REVIEW)


class RemovalAction(StrEnum):
    REVIEW = "review"  # the judge (or clerk) takes the request up
    COMMENT = "comment"  # the creditor's written view: the state stays
    CANCEL = "cancel"  # the debtor withdraws it
    APPROVE = "approve"
    REJECT = "reject"
    ISSUE_DISARM = "issue_disarm"  # the signed disarm goes to every seal of the case
    RESEND_DISARM = "resend_disarm"  # a new disarm to a seal that has not acknowledged (or is armed again)
    LIFT_WITHOUT_ACK = "lift_without_ack"  # the judge: a seal that does not answer is lifted without its ack
    CONFIRM_DISARMED = "confirm_disarmed"  # each seal's signed command_ack arrived (or the judge went without it)
    ARMED_AGAIN = "armed_again"  # the server: a seal's signed word since says it is not disarmed (armed again)
    LIFT = "lift"  # an officer on site confirms the physical removal
    ABORT = "abort"  # the judge withdraws the approval: the seals are armed again, the seizure stands


S, A = RemovalState, RemovalAction
_TABLE: dict[RemovalState, dict[RemovalAction, RemovalState]] = {
    S.SUBMITTED: {A.REVIEW: S.UNDER_REVIEW, A.COMMENT: S.SUBMITTED, A.CANCEL: S.CANCELLED},
    S.UNDER_REVIEW: {A.APPROVE: S.APPROVED, A.REJECT: S.REJECTED, A.COMMENT: S.UNDER_REVIEW, A.CANCEL: S.CANCELLED},
    S.APPROVED: {A.ISSUE_DISARM: S.DISARM_PENDING},
    S.DISARM_PENDING: {
        A.RESEND_DISARM: S.DISARM_PENDING,
        A.LIFT_WITHOUT_ACK: S.DISARM_PENDING,
        A.CONFIRM_DISARMED: S.DISARMED,
        A.ABORT: S.ABORTED,
    },
    S.DISARMED: {
        A.LIFT: S.LIFTED,
        A.RESEND_DISARM: S.DISARM_PENDING,
        A.ARMED_AGAIN: S.DISARM_PENDING,
        A.ABORT: S.ABORTED,
    },
    S.REJECTED: {},
    S.CANCELLED: {},
    S.LIFTED: {},
    S.ABORTED: {},
}
del S, A

#: States in which a request is open: a case has at most one open request at a time.
OPEN_STATES = frozenset(state for state in RemovalState if not state.is_final)


def transition(state: RemovalState | str, action: RemovalAction) -> RemovalState:
    """The state after ``action`` in ``state``; raise :class:`IllegalTransition` if ``state`` does not allow it."""
    current = RemovalState(state)
    target = _TABLE[current].get(action)
    if target is None:
        allowed = ", ".join(sorted(_TABLE[current])) or "nothing (it is final)"
        raise IllegalTransition(
            current.value,
            action.value,
            f"a removal request that is {current.value} cannot {action.value}: it allows {allowed}",
        ).saying(
            "refusal.state",
            state=Said(f"case_removal_state.{current.value}"),
            action=Said(f"refused_action.{action.value}"),
        )
    return target


def allowed_actions(state: RemovalState | str) -> list[RemovalAction]:
    """The actions ``state`` allows, in the table's order (what a client may offer next)."""
    return list(_TABLE[RemovalState(state)])
