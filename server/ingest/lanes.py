"""The ingest worker's queue, fair between seals: one lane per seal account, taken in turn, one message at a time.

paho's thread puts each message in the lane of its topic's account (``seal/v1/<device_id>/…``); the worker takes
from the lanes in turn, so that a batch holds the messages of every seal waiting, and one account's backlog (a
flood of garbage from its password) no longer holds another seal's intrusion behind it inside the court. Each lane
is first in, first out: a seal's messages keep their order. A marker (:mod:`.marker`, "everything received before me
is committed") is taken only once every message received before it was taken: the worker passes it after the batches
holding them are committed, as before. Only the court's queue is fair: the broker delivers to the court's session in
the order it received, within the court's in-flight window (docs/reliability.md, "One seal's flood").

An *urgent* message (an intrusion or a tamper report, :func:`is_urgent`) takes no turn ahead of the others: that
would let a seal's account put its flood first by making it look urgent. It cuts short the worker's linger instead
(:meth:`FairQueue.linger`): the batch holding it is taken at once rather than after ``batch_linger_ms``.

Thread-safe; the interface of :class:`queue.Queue` the worker uses (``put``, ``get``, ``get_nowait``, ``qsize``).
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from seal_protocol import topic_account

T = TypeVar("T")

#: The end of an event's canonical JSON (keys sorted: ``type`` is followed only by ``v``) whose type pages the court
#: at once. Found in the bytes, not parsed: it only decides whether the worker lingers, never what is stored.
_URGENT_TAILS = (b'"type":"intrusion","v":', b'"type":"tamper","v":')


def is_urgent(topic: str, payload: bytes) -> bool:
    """A message on a seal's ``event`` topic whose bytes read as an intrusion or a tamper report (unchecked)."""
    return topic.endswith("/event") and any(tail in payload for tail in _URGENT_TAILS)


@dataclass(slots=True)
class _Mark(Generic[T]):
    seq: int
    before: int  # messages put before it and not taken yet
    item: T


class FairQueue(Generic[T]):
    """``lane_of(item)``: the item's lane, or None for a marker (taken after everything put before it);
    ``urgent_of(item)``: whether it cuts short a :meth:`linger`."""

    def __init__(self, lane_of: Callable[[T], str | None], urgent_of: Callable[[T], bool] | None = None) -> None:
        self._lane_of, self._urgent_of = lane_of, urgent_of
        self._lanes: dict[str, deque[tuple[int, T, bool]]] = {}
        self._turns: deque[str] = deque()  # the lanes holding messages, the next to take from first
        self._marks: deque[_Mark[T]] = deque()
        self._cond = threading.Condition(threading.Lock())
        self._seq = 0
        self._size = 0
        self._urgent = 0  # urgent items waiting
        self._hurry = threading.Event()  # set while one waits (or once woken to stop)

    def qsize(self) -> int:
        return self._size

    def put(self, item: T) -> None:
        lane = self._lane_of(item)
        urgent = lane is not None and self._urgent_of is not None and self._urgent_of(item)
        with self._cond:
            self._seq += 1
            if lane is None:
                self._marks.append(_Mark(self._seq, self._size - len(self._marks), item))
            else:
                waiting = self._lanes.get(lane)
                if waiting is None:
                    waiting = self._lanes[lane] = deque()
                    self._turns.append(lane)
                waiting.append((self._seq, item, urgent))
                if urgent:
                    self._urgent += 1
                    self._hurry.set()
            self._size += 1
            self._cond.notify()

    def linger(self, seconds: float) -> None:
        """Wait ``seconds`` for more items to come, unless an urgent one waits or comes meanwhile, or :meth:`wake`.
        One wait, not a wake-up per item put."""
        self._hurry.wait(seconds)

    def wake(self) -> None:
        """End every linger from now on (the worker stops)."""
        with self._cond:
            self._urgent += 1
            self._hurry.set()

    def get(self, timeout: float) -> T:
        """The next item, waiting up to ``timeout`` seconds for one; :class:`queue.Empty` if none came."""
        end = time.monotonic() + timeout
        with self._cond:
            while self._size == 0:
                left = end - time.monotonic()
                if left <= 0 or not self._cond.wait(left):
                    if self._size == 0:
                        raise queue.Empty
            return self._pop()

    def get_nowait(self) -> T:
        with self._cond:
            if self._size == 0:
                raise queue.Empty
            return self._pop()

    def _pop(self) -> T:
        self._size -= 1
        if self._marks and self._marks[0].before == 0:
            return self._marks.popleft().item
        lane = self._turns.popleft()
        waiting = self._lanes[lane]
        seq, item, urgent = waiting.popleft()
        if urgent:
            self._urgent -= 1
            if not self._urgent:
                self._hurry.clear()
        if waiting:
            self._turns.append(lane)
        else:
            del self._lanes[lane]
        for mark in self._marks:
            if seq < mark.seq:
                mark.before -= 1
        return item


def lane_of(topic: str, marker_topic: str) -> str | None:
    """The lane of a message on ``topic`` (:func:`lane_of_topic`); None for the worker's markers on ``marker_topic``."""
    return None if topic == marker_topic else lane_of_topic(topic)


def lane_of_topic(topic: str) -> str:
    """The lane of a seal's topic ``seal/v1/<device_id>/…``: its account (:func:`seal_protocol.topic_account`; the
    ACL lets a seal's account publish only under its own device id), whether or not the rest of the topic parses; any
    other topic is a lane of its own."""
    return topic_account(topic) or topic
