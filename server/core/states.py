"""A table of allowed state changes and its one transition function, for the state machines of the server whose
moves are named by the state they lead to (alarms, court commands). A removal request's moves are named by the
action that makes them (approve, lift, …): its table and function are in :mod:`server.removal.state`."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from enum import StrEnum
from typing import Generic, TypeVar

from server.errors import Conflict

S = TypeVar("S", bound=StrEnum)


class StateMachine(Generic[S]):
    """``allowed[state]``: the states ``state`` may become. ``refusal(current, target)`` words the :class:`Conflict`
    an illegal move raises (the API answers it with 409 and the current state)."""

    def __init__(self, states: type[S], allowed: Mapping[S, Iterable[S]], *, refusal: Callable[[S, S], str]) -> None:
        missing = set(states) - set(allowed)
        if missing:
            raise ValueError(f"no rule for {sorted(missing)}")
        self.states = states
        self.allowed = {state: frozenset(targets) for state, targets in allowed.items()}
        self._refusal = refusal

    def transition(self, current: S | str, target: S) -> S:
        """The state after moving from ``current`` to ``target``; raise :class:`Conflict` if that is not allowed."""
        state = self.states(current)
        if target not in self.allowed[state]:
            raise Conflict(self._refusal(state, target))
        return target

    def is_final(self, state: S) -> bool:
        return not self.allowed[state]

    def leading_to(self, target: S) -> frozenset[S]:
        """The states from which ``target`` may be reached (for set-based updates such as an expiry check)."""
        return frozenset(state for state, allowed in self.allowed.items() if target in allowed)
