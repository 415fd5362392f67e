"""A court command's life: pending → acknowledged | rejected | expired, through one function.

``pending`` is all the court knows until the seal answers: a command the broker accepted is *not* delivered. Only
the seal's signed ``command_ack`` makes it ``acknowledged`` (delivered and carried out), its ``command_rejected``
makes it ``rejected``. A command still pending when it expires becomes ``expired`` — "no answer in time", not "not
carried out": the seal checks the expiry by its own clock, so an answer that arrives afterwards (a seal that was
offline with the ack in its outbox) still moves it on to ``acknowledged`` or ``rejected``. Those two are final.
"""

from __future__ import annotations

from enum import StrEnum

from server.errors import Conflict


class CommandState(StrEnum):
    PENDING = "pending"
    ACKNOWLEDGED = "acknowledged"
    REJECTED = "rejected"
    EXPIRED = "expired"

    @property
    def is_final(self) -> bool:
        return not _ALLOWED[self]


_ALLOWED: dict[CommandState, frozenset[CommandState]] = {
    CommandState.PENDING: frozenset({CommandState.ACKNOWLEDGED, CommandState.REJECTED, CommandState.EXPIRED}),
    CommandState.EXPIRED: frozenset({CommandState.ACKNOWLEDGED, CommandState.REJECTED}),
    CommandState.ACKNOWLEDGED: frozenset(),
    CommandState.REJECTED: frozenset(),
}


def transition(current: CommandState | str, target: CommandState) -> CommandState:
    """The state after moving from ``current`` to ``target``; raise :class:`Conflict` if that move is not allowed."""
    state = CommandState(current)
    if target not in _ALLOWED[state]:
        raise Conflict(f"a command that is {state.value} cannot become {target.value}")
    return target


def states_leading_to(target: CommandState) -> frozenset[CommandState]:
    """The states from which ``target`` may be reached (for set-based updates such as the expiry check)."""
    return frozenset(state for state, allowed in _ALLOWED.items() if target in allowed)
