"""The messages a worker holds back (:attr:`~server.ingest.results.Outcome.DEFERRED`, ``[mqtt] gap_wait_s``), and
the markers they hold back with them (:mod:`server.ingest.marker`).

A marker says its worker has committed every message it received before the marker. A message held back for its
predecessor is not committed: it waits, unacknowledged, to be offered again. So a marker whose batch is settled
passes only once every message held at that moment — of its batch or of any earlier one — has an outcome other than
DEFERRED; until then it waits here, unacknowledged, and passes (in order) with the settlement that ends the last of
them. The hold is bounded (:mod:`server.ingest.gap_wait`), so a marker is delayed, never lost. Used by the worker's
thread alone.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable, Iterable
from dataclasses import dataclass
from typing import Generic, TypeVar

from server.ingest.backlog import footprint
from server.ingest.results import Message

T = TypeVar("T", bound=Hashable)


@dataclass(frozen=True, slots=True, eq=False)
class Received:
    """A message as the worker's queue holds it: ``generation`` names the connection whose packet id ``mid`` is.
    Compared by identity: a message offered again is the same object, two that are alike are two."""

    generation: int
    mid: int
    qos: int
    message: Message

    @property
    def footprint(self) -> int:
        """The bytes it costs held (:func:`~server.ingest.backlog.footprint`)."""
        return footprint(self.message.topic, len(self.message.payload))


class HeldBack(Generic[T]):
    """The items held back, and the markers waiting for them."""

    def __init__(self) -> None:
        self._held: set[T] = set()
        self._marks: deque[tuple[list[T], set[T]]] = deque()  # markers, and the items held when their batch settled

    def settled(self, done: Iterable[T], held: Iterable[T]) -> list[T]:
        """Items of a committed batch: ``done`` have their outcome, ``held`` are held back (again). The markers that
        may pass now, in order."""
        done = set(done)
        self._held.difference_update(done)
        self._held.update(held)
        for _, waiting in self._marks:
            waiting.difference_update(done)
        free: list[T] = []
        while self._marks and not self._marks[0][1]:
            free += self._marks.popleft()[0]
        return free

    def after(self, marks: list[T]) -> list[T]:
        """``marks``, whose batch is settled: those that may pass now (all of them, or none while items are held)."""
        if not self._held and not self._marks:
            return marks
        self._marks.append((marks, set(self._held)))
        return self.settled((), ())
