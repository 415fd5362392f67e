"""A court command's life: pending → acknowledged | rejected | expired, through one function.

``pending`` is all the court knows until the seal answers: a command the broker accepted is *not* delivered. Only
the seal's signed ``command_ack`` makes it ``acknowledged`` (delivered and carried out), its ``command_rejected``
makes it ``rejected``. A command still pending when it expires becomes ``expired`` — "no answer in time", not "not
carried out": the seal checks the expiry by its own clock, so an answer that arrives afterwards (a seal that was
offline with the ack in its outbox) still moves it on to ``acknowledged`` or ``rejected``. ``acknowledged`` is
final; ``rejected`` too, except for the seal's ack: a command published twice (a PUBACK lost) may be refused in
one copy (``not_yet_valid``: a clock not yet set) and carried out in the other, and the signed ack says what
happened.
"""

from __future__ import annotations

from enum import StrEnum

from server.core.states import StateMachine
from server.words import words


class CommandState(StrEnum):
    PENDING = "pending"
    ACKNOWLEDGED = "acknowledged"
    REJECTED = "rejected"
    EXPIRED = "expired"

    @property
    def is_final(self) -> bool:
        return _MACHINE.is_final(self)


_MACHINE = StateMachine(
    CommandState,
    {
        CommandState.PENDING: {CommandState.ACKNOWLEDGED, CommandState.REJECTED, CommandState.EXPIRED},
        CommandState.EXPIRED: {CommandState.ACKNOWLEDGED, CommandState.REJECTED},
        CommandState.ACKNOWLEDGED: set(),
        CommandState.REJECTED: {CommandState.ACKNOWLEDGED},  # another copy carried out: its signed ack wins
    },
    refusal=lambda state, target: (
        f"该指令目前为“{words('case_command_state', state)[0]}”，"
        f"不能再改为“{words('case_command_state', target)[0]}”。 / "
        f"a command that is {state.value} cannot become {target.value}"
    ),
)


def transition(current: CommandState | str, target: CommandState) -> CommandState:
    """The state after moving from ``current`` to ``target``; raise :class:`Conflict` if that move is not allowed."""
    return _MACHINE.transition(current, target)


def states_leading_to(target: CommandState) -> frozenset[CommandState]:
    """The states from which ``target`` may be reached (for set-based updates such as the expiry check)."""
    return _MACHINE.leading_to(target)
