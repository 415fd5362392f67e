"""The sensors' edges never wait for an ``armed``/``disarmed`` being committed (an fsync on an SD card, or a trigger
still being made ahead of it: up to :data:`~seal_agent.behaviour.seal.SETTLE_S`).

:meth:`SealAgent.arm <seal_agent.behaviour.seal.SealAgent.arm>` and ``disarm`` commit their event and take the state
it tells under the seal's lock, so that an edge sees the seal armed or disarmed, never between (an ``intrusion`` that
read ``armed`` is committed before the ``disarmed``, one decided after it says so). An edge on the sensor library's
callback thread must not wait for that commit: it would hold back that edge's handler and every other pin's (the
tamper switch shares the pin factory's thread). :class:`EdgeGate` decides an edge under the lock at once if no change
is being made; while one is, the edge's decision is kept in memory, in the order of the edges, and the changing thread
makes it as soon as the change is settled (committed or refused), under the same lock, before anything else can
change the state again: the edge sees the state the change left, and its event is put in line behind the change. The
edge's time was taken on its own thread before, so what is signed is when it happened.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator

from seal_agent.behaviour.clock import guarded

#: What an edge decides under the seal's lock (warn or not, and put its event in line).
Decision = Callable[[], None]


class EdgeGate:
    """Runs the edges' decisions under ``lock`` now, or right after the change being committed under it."""

    def __init__(self, lock: threading.RLock) -> None:
        self._lock = lock
        self._gate = threading.Lock()  # never held across a commit, nor while waiting for ``lock`` during a change
        self._changing = False
        self._waiting: list[Decision] = []

    def decide(self, decision: Decision) -> None:
        """Run ``decision`` under the seal's lock now, or, while a change is being made, leave it to the changing
        thread (it runs it once the change is settled). Returns without waiting for any commit."""
        with self._gate:
            if self._changing:
                self._waiting.append(decision)
                return
            with self._lock:  # held only briefly by anyone but a change, and no change starts meanwhile
                decision()

    @contextlib.contextmanager
    def changing(self) -> Iterator[None]:
        """Hold the seal's lock for a change; the edges meanwhile are decided after it, in their order, on this
        thread, also if the change failed."""
        with self._gate:  # from now on the edges wait in memory, not for the lock
            self._changing = True
        try:
            with self._lock:
                yield
        finally:
            self._decide_waiting()

    def _decide_waiting(self) -> None:
        with self._lock:  # before the timer or the next change can act on the state the change left
            while True:
                with self._gate:
                    waiting, self._waiting = self._waiting, []
                    if not waiting:
                        self._changing = False
                        return
                for decision in waiting:
                    guarded("an edge decided after arm/disarm", decision)
