"""The trigger responder's events in the recorder's line: they wait there, in memory, while the outbox refuses them
(a full disk), and keep their place.

An event the outbox refuses for now is held at its place in the
:class:`~seal_agent.journal.recorder.EventRecorder`'s line (its :class:`~seal_agent.journal.recorder.Turn`): any
later event, whoever records it, commits it first. :class:`TurnWaiter` waits for such a turn on behalf of a thread
that needs the committed event (its ``seq``), and tries the line again now and then in case nobody else records;
a stop interrupts the wait, and the event stays in line for the recorder's close. :class:`TriggerLine` builds the
triggers' events in the order of their edges and puts each in line at once, so that one waiting for room holds no
later trigger back from its place; what needs an event's ``seq`` follows its commit, in the same order.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from seal_agent.errors import EventLost, OutboxError
from seal_agent.journal.outbox import Outbox, Settings, StoredEvent
from seal_agent.journal.recorder import LateFields, Turn
from seal_protocol import EventType

logger = logging.getLogger(__name__)

#: A waiter tries the line again after this many s, doubling up to :data:`RECORD_RETRY_MAX_S` (any other event recorded
#: meanwhile commits the held ones first, and wakes it at once): the event is evidence, kept until the disk has room.
RECORD_RETRY_S = 0.5
RECORD_RETRY_MAX_S = 30.0


class EventLine(Protocol):
    """Where the responder's events go (:class:`~seal_agent.journal.recorder.EventRecorder`)."""

    def record_in_line(
        self,
        type: EventType,
        payload: Mapping[str, Any] | None = None,
        *,
        at: float | None = None,
        late: LateFields | None = None,
        settings: Settings | None = None,
    ) -> Turn: ...

    def retry_held(self) -> None: ...

    @property
    def outbox(self) -> Outbox: ...


class TurnWaiter:
    """Waits for turns of ``line``, any number of threads at once; :meth:`stop` ends every wait, now and later."""

    def __init__(self, line: EventLine) -> None:
        self._line = line
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._waiting: set[Turn] = set()

    def start(self) -> None:
        self._stopping.clear()

    def stop(self) -> None:
        """Wake every wait: each tries the line once more and, if the outbox still refuses it, gives up waiting."""
        self._stopping.set()
        with self._lock:
            for turn in self._waiting:
                turn.interrupt()

    def settled(self, turn: Turn) -> StoredEvent:
        """Wait for the event of ``turn``: while the outbox refuses it, try the line again with a doubling delay.
        Returns the stored event; raises EventLost (its event_lost stands in its place) or, once stopped and the
        outbox still refuses it, OutboxError (it stays in line: the recorder's close tries it once more, or logs it
        whole)."""
        delay = RECORD_RETRY_S
        with self._lock:
            self._waiting.add(turn)  # before the first check of _stopping: a stop interrupts this wait
        try:
            while not turn.wait(0.0 if self._stopping.is_set() else delay):
                try:
                    self._line.retry_held()
                except OutboxError:
                    if self._stopping.is_set() and not turn.settled:
                        logger.error("%s of %s not committed before stopping: left in line", turn.type.value, turn.at)
                        raise
                    logger.exception("%s not committed; kept in line, trying again in %.1f s", turn.type.value, delay)
                delay = min(delay * 2, RECORD_RETRY_MAX_S)
            return turn.result()
        finally:
            with self._lock:
                self._waiting.discard(turn)


#: A job building a trigger's event, on the trigger worker.
Job = Callable[[], None]
#: Called on the committer with a trigger's committed event, or None if it was lost or is left in line at the stop
#: (its turn tells which: a turn not settled may still be committed by the recorder's close), and its turn.
Then = Callable[[StoredEvent | None, Turn], None]


class TriggerLine:
    """The trigger worker and the committer. Jobs build the triggers' events one at a time, in the order of their
    edges (``seal-triggers``), and :meth:`commit` each to the recorder's line without waiting for room; what needs
    a committed event's ``seq`` then runs on ``seal-trigger-commits``, in the same order, once it is committed.
    Not started (or stopped), both run on the caller's thread rather than never. A ``then`` stuck past the stop's
    timeout does not keep those behind it from running: the stop runs them itself (:attr:`draining`)."""

    def __init__(self, line: EventLine) -> None:
        self._line = line
        self.waiter = TurnWaiter(line)
        self._jobs: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._commits: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._idle = threading.Condition()
        self._building = 0  # jobs whose event is not yet committed or in line
        self._queued = 0  # events committed or in line whose ``then`` has not run
        self._worker: threading.Thread | None = None
        self._committer: threading.Thread | None = None
        #: True once a stop found the committer stuck and runs the ``then`` behind it itself (its hooks may skip).
        self.draining = False
        self._abandoned: set[threading.Thread] = set()  # committers stuck past a stop: they take no more jobs

    def start(self) -> None:
        self.draining = False
        self.waiter.start()
        committer = threading.Thread(target=self._work, args=(self._commits, False), name="seal-trigger-commits")
        committer.daemon = True
        with self._idle:
            self._committer = committer
        committer.start()
        self._worker = threading.Thread(target=self._work, args=(self._jobs, True), name="seal-triggers", daemon=True)
        self._worker.start()

    def stop(self, timeout: float) -> bool:
        """Build the events of the jobs queued, then run what follows their commits, all within ``timeout`` s; an
        event the outbox still refuses is tried once more, then left in the recorder's line (its ``then`` gets
        None). A ``then`` stuck past the timeout is logged, and the stop runs those behind it on its own thread, in
        order (:attr:`draining` is then True: a ``then`` must not wait there). Returns whether it had to."""
        deadline = time.monotonic() + timeout
        worker, self._worker = self._worker, None
        self.waiter.stop()
        if worker is not None:
            self._jobs.put(None)
            worker.join(timeout)
        with self._idle:  # nothing is handed to the committer after its end
            committer, self._committer = self._committer, None
            if committer is not None:
                self._commits.put(None)
        if committer is not None:
            committer.join(max(0.0, deadline - time.monotonic()))
            if committer.is_alive():
                with self._idle:
                    behind = self._queued
                    self.draining = True
                    self._abandoned.add(committer)  # should it return, it takes no more
                logger.error(
                    "what follows a trigger's commit did not end in %.1f s; the stop follows up the %d trigger(s) "
                    "behind it",
                    timeout,
                    behind - 1,
                )
                self._drain()
                return True
        return False

    def _drain(self) -> None:
        """Run the ``then`` queued behind a stuck one on this thread, in order (and its end marker: nothing is left
        for a later start's committer); the stuck committer, if it ever returns, ends."""
        while True:
            try:
                job = self._commits.get_nowait()
            except queue.Empty:
                break
            if job is not None:
                self._run(job, False)

    def submit(self, job: Job) -> None:
        """Build an event on the worker (it calls :meth:`commit`)."""
        with self._idle:
            self._building += 1
        if self._worker is None:
            self._run(job, True)
        else:
            self._jobs.put(job)

    def commit(
        self, type: EventType, payload: Mapping[str, Any], *, at: float, then: Then, settings: Settings | None = None
    ) -> Turn:
        """Commit the event that happened at ``at`` (monotonic) with ``settings``, or put it in line (returns its turn
        at once), and run ``then`` on the committer once it is committed, after the ``then`` of the events before it
        (also if waiting for it failed: with None)."""
        turn = self._line.record_in_line(type, payload, at=at, settings=settings)

        def committed() -> None:
            stored: StoredEvent | None = None
            try:
                stored = self.waiter.settled(turn)
            except EventLost as lost:  # its event_lost is committed; the next trigger goes on
                logger.error("a trigger's event was lost: %s", lost)
            except OutboxError:  # stopped first (logged): the event stays in the recorder's line
                pass
            finally:  # whatever the wait raised, what follows the trigger is not left waiting
                then(stored, turn)

        with self._idle:
            self._queued += 1
            committer = self._committer
            if committer is not None:
                self._commits.put(committed)
        if committer is None:
            self._run(committed, False)
        return turn

    def wait_in_line(self, timeout: float) -> bool:
        """Wait until the event of every job so far is committed or in the recorder's line (an event recorded next
        comes after it); False on timeout."""
        with self._idle:
            return self._idle.wait_for(lambda: self._building == 0, timeout)

    def wait_committed(self, timeout: float) -> bool:
        """Wait until the event of every job so far is committed (or lost) and its ``then`` has run."""
        with self._idle:
            return self._idle.wait_for(lambda: self._building == 0 and self._queued == 0, timeout)

    def _work(self, jobs: queue.SimpleQueue[Job | None], building: bool) -> None:
        # Once a stop drains the commits (this committer was stuck past it), it takes no more: each job is taken
        # once, by one thread (one returning just as the stop gave up on it may run a last one alongside the drain).
        me = threading.current_thread()
        while me not in self._abandoned and (job := jobs.get()) is not None:
            self._run(job, building)

    def _run(self, job: Job, building: bool) -> None:
        try:
            job()
        except Exception:  # the worker's (or committer's) top level: log, and go on with the next trigger
            logger.exception("recording a trigger failed")
        finally:
            with self._idle:
                if building:
                    self._building -= 1
                else:
                    self._queued -= 1
                self._idle.notify_all()
