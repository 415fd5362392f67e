"""How an event's ``ts`` is told: in the wall clock in force at its place in the chain (see
:mod:`seal_agent.journal.recorder`), from the moment it happened on the monotonic clock."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from seal_agent.interfaces import Clock
from seal_protocol import utc_now_ms

#: The two clocks read together, (monotonic, wall): the wall clock in force at an event's place in the chain.
Anchor = tuple[float, datetime]


@dataclass(frozen=True, slots=True)
class Moment:
    """A past moment on the monotonic clock, as a payload value: signed as a ``ts`` in the clock of the event's own."""

    mono: float


class Timeline(Protocol):
    """The clocks an event is stamped with at its place in the line
    (:class:`~seal_agent.behaviour.clock.ClockWatch`)."""

    def monotonic(self) -> float: ...

    def place(self) -> tuple[Anchor, Mapping[str, Any] | None]:
        """The clocks now, and the payload of a ``clock_stepped`` if the wall clock stepped since the last reading."""
        ...


class LiveClock:
    """The wall clock as it reads, with no watch on its steps (a recorder whose seal has not started)."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock

    def monotonic(self) -> float:
        return self._clock.monotonic()

    def place(self) -> tuple[Anchor, Mapping[str, Any] | None]:
        return (self._clock.monotonic(), self._clock.now()), None


def told(value: Any, wall_of: Callable[[float], datetime]) -> Any:
    """``value`` with each :class:`Moment` in it told as a ``ts`` by ``wall_of``."""
    if isinstance(value, Moment):
        return utc_now_ms(wall_of(value.mono))
    if isinstance(value, Mapping):
        return {key: told(item, wall_of) for key, item in value.items()}
    if isinstance(value, list):
        return [told(item, wall_of) for item in value]
    return value
