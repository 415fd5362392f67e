"""The decoding and Ed25519 checks of an ingest batch's events, partly in a process of their own.

Decoding an event (JSON, the schema, the canonical form) and checking its signature are most of what the ingest's
thread does per event outside its transaction, and neither needs the database. With ``[mqtt] verifier_process`` the
ingest's thread hands the events of a batch whose seal's key it knows, a chunk at a time, to a verifier process
(:mod:`server.ingest.verifier_process`) that decodes each and checks its signature (:func:`open_event`); it opens
every other chunk, and the last few, itself meanwhile, then collects the answers: this work runs beside the ingest's
thread instead of in it, on another core, and outside this process's interpreter lock. A batch opened ahead of its
turn (the next batch, while the ingest stores the one before, once :data:`AHEAD_AT` messages wait,
:class:`~server.ingest.mqtt.MqttIngest`) goes to the process whole. The first batch of :data:`START_AT` messages
starts the process.

The answers are what :func:`open_event` gives here, in the order the events were added: the envelope, the bytes its
signature covers and the signature's problem, or the decoding's refusal. The process is this very code in a process
of the court's own (started as :data:`~server.ingest.verifier_process.BOOT` says), trusted as this thread is: what
it decoded is what is stored. Nothing is taken without an answer of that shape to exactly those events, in the
process's own numbering: if the process is gone, stalls or answers anything else, this thread opens those events
itself (logged, counted), and a new process is started at a later batch. One batch at a time: while a batch's events
are with the process, another batch's are opened here.
"""

from __future__ import annotations

import logging
import pickle
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import cast

from seal_protocol.signing import VerifyKey
from server.ingest.opened import Answer, open_event, well_formed
from server.ingest.verifier_pipe import Pipe
from server.ingest.verifier_process import READY, start

logger = logging.getLogger(__name__)

#: Events sent to the verifier process at a time (≈ 40 KB; their answers ≈ 80 KB): the first chunk starts being
#: opened after this many are added.
CHUNK = 64
#: A batch of this many messages starts the verifier process (a quiet court, one event at a time, never does).
START_AT = 16
#: While this many messages wait behind the batch in hand (a backlog forms), the next batch is opened ahead by the
#: process. Below, at a steady rate, the batch in hand is opened in its turn: pipelined, the batches of a steady
#: stream were smaller (costing more CPU) for no shorter wait (bench/ingest.py, docs/benchmarks.md).
AHEAD_AT = 32
#: After the verifier process failed, the ingest opens every event itself for this long before starting another.
RESTART_AFTER_S = 30.0
#: Chunks sent and not yet collected, at most: beyond, the oldest one's answers are collected before more is sent.
#: The pipes hold about a batch's chunks and answers (:data:`~server.ingest.verifier_process.PIPE_SIZE`), and while
#: a send waits for room, the answers that come are read meanwhile (:class:`Pipe`): neither side can wait for the
#: other with both pipes full.
MAX_UNANSWERED = 8
#: How long the ingest waits for the answers to one chunk (64 events take about 5 ms), or for the process to take a
#: chunk it sends (a full pipe), before it takes the process for stuck, stops it and opens those events itself.
ANSWER_TIMEOUT_S = 10.0


class Checks:
    """The events of one batch to open, answered in the order they were added (opened here, at once)."""

    def __init__(self) -> None:
        self.answers: list[Answer] = []

    def add(self, key: VerifyKey, data: bytes) -> None:
        self.answers.append(open_event(key, data))

    def send_all(self) -> None:
        """Hand over every event added, also a last chunk that is not full (the batch is opened ahead of its turn:
        the answers will be there when it comes)."""

    def results(self) -> list[Answer]:
        return self.answers

    def abandon(self) -> None:
        """The batch will not take its answers (it failed before): let go of what it holds."""


class Verifier:
    """Opens events in this thread; :class:`ProcessVerifier` shares them with a process."""

    def checks(self, *, ahead: bool = False) -> Checks:
        """The checks of a batch (``ahead``: opened ahead of its turn, see :meth:`Checks.send_all`)."""
        return Checks()

    def shares(self) -> bool:
        """Whether a batch's events would now be opened partly elsewhere (else opening one ahead gains nothing)."""
        return False

    def expect(self, events: int) -> None:
        """A batch of ``events`` messages is in hand (a verifier process is started if that is worth it)."""

    def close(self) -> None:
        pass


class ProcessVerifier(Verifier):
    """Hands most of a batch's events to a verifier process (started at the first batch, again after a failure)."""

    def __init__(
        self,
        *,
        on_failure: Callable[[], None] | None = None,
        answer_timeout_s: float = ANSWER_TIMEOUT_S,
        restart_after_s: float = RESTART_AFTER_S,
    ) -> None:
        self._on_failure = on_failure
        self.answer_timeout_s = answer_timeout_s
        self.restart_after_s = restart_after_s
        self._process: subprocess.Popen[bytes] | None = None
        self._connection: Pipe | None = None
        self._failed_at: float | None = None
        self._started_at = 0.0
        self._ready = False
        self._numbered = 0
        self._closed = False
        self._in_hand = 0  # batches whose checks are under way (the ingest's thread may be using the pipe)
        self.answered = 0  # events the process has opened (and whose answers were taken), since the start
        # The ingest's thread starts the process; the thread that stops the ingest may close it meanwhile.
        self._lock = threading.Lock()

    def checks(self, *, ahead: bool = False) -> Checks:
        if self._closed or self._in_hand > 0:  # the process answers one batch at a time: others are opened here
            return Checks()
        if self._connection is None and self._failed_at is not None:
            if time.monotonic() - self._failed_at < self.restart_after_s:
                return Checks()  # opened here for a while after a failure
        return _SharedChecks(self, ahead=ahead)

    def shares(self) -> bool:
        """A process is ready (one starting, or none after a failure, opens nothing)."""
        return not self._closed and self._connection is not None and self._ready

    def expect(self, events: int) -> None:
        """From a batch of :data:`START_AT` messages on (a steady stream, a burst), a process is started if none
        runs (not for a while after a failure); while it starts, batches are opened here, each asking whether it is
        ready yet."""
        if self._closed or self._in_hand > 0 or (self._connection is not None and self._ready):
            return
        if self._connection is None:
            if events < START_AT:
                return
            if self._failed_at is not None and time.monotonic() - self._failed_at < self.restart_after_s:
                return
        self.connected()

    def connected(self) -> Pipe | None:
        """The pipe to the verifier process once it is ready; None while it starts (it is started now if none
        runs: a fresh interpreter takes most of a second, during which this thread checks everything itself rather
        than wait), or if it cannot be."""
        if self._connection is None and not self._start():
            return None
        connection = self._connection  # None, or closed, if the verifier was closed meanwhile: a failure not counted
        if connection is None:
            return None
        if not self._ready:
            try:
                if connection.poll(0):
                    self._ready = pickle.loads(connection.recv_bytes()) == (0, READY)
                    if not self._ready:
                        raise ValueError("the verifier process did not say it was ready")
                elif time.monotonic() - self._started_at > self.answer_timeout_s:
                    raise TimeoutError(f"not ready within {self.answer_timeout_s:g} s")
            except Exception as exc:  # noqa: BLE001 - whatever its first words are, they are not "ready"
                self.failed(exc)
                return None
        return connection if self._ready else None

    def _start(self) -> bool:
        """Start a verifier process; False if the verifier is closed, or if it cannot be started (logged, counted)."""
        with self._lock:
            if self._closed:
                return False
            try:
                self._process, self._connection = start()
            except Exception:  # noqa: BLE001 - whatever it is, the ingest goes on checking signatures itself
                logger.exception("cannot start the verifier process; the ingest decodes and checks events itself")
            else:
                self._started_at, self._ready = time.monotonic(), False
                return True
        self._failed()
        return False

    def number(self) -> int:
        """A new chunk's number (they grow: answers to an abandoned chunk are recognised and skipped)."""
        self._numbered += 1
        return self._numbered

    @property
    def pid(self) -> int | None:
        """The verifier process's, while one runs."""
        return None if self._process is None else self._process.pid

    def failed(self, exc: BaseException, connection: Pipe | None = None) -> None:
        """The process behind ``connection`` (default: the current one) failed: end it, count it."""
        if self._closed:
            return  # closed under a batch in hand (a stop that did not wait for it): the batch checks the rest itself
        if connection is not None and connection is not self._connection:
            return  # a process ended already (its failure was counted then): not the one running now
        logger.error(
            "the verifier process failed (%s: %s); the ingest decodes and checks events itself", type(exc).__name__, exc
        )
        self._failed()

    def _failed(self) -> None:
        self._failed_at = time.monotonic()
        if self._on_failure is not None:
            self._on_failure()
        self._end_process()

    def close(self) -> None:
        """End the verifier process, for good: the ingest's thread makes every check itself from now on. Any thread
        may call it, also while the ingest's thread is in a batch: that thread then makes the checks it sent too.
        The pipe of a batch in hand is left to that thread (it may be reading or writing it: closed here, its
        descriptors' numbers could be taken by a socket meanwhile); the process is killed, so that the thread sees
        its end, and the pipe is closed when the batch lets go of it."""
        with self._lock:
            self._closed = True
            in_hand = self._in_hand > 0
            connection, process = self._connection, self._process
            self._connection = self._process = None
        self._end(None if in_hand else connection, process)

    def taken(self, in_hand: bool) -> bool:
        """A batch's checks begin (``True``: False, and nothing taken, once the verifier is closed) or end: the pipe
        is in hand meanwhile (see :meth:`close`)."""
        with self._lock:
            if in_hand and self._closed:
                return False
            self._in_hand += 1 if in_hand else -1
            return True

    def _end_process(self) -> None:
        with self._lock:
            connection, process = self._connection, self._process
            self._connection = self._process = None
        self._end(connection, process)

    @staticmethod
    def _end(connection: Pipe | None, process: subprocess.Popen[bytes] | None) -> None:
        """Close ``connection`` (the process sees the end and exits); without one (a batch holds it), kill it."""
        if connection is not None:
            connection.close()
        if process is None:
            return
        if connection is None:
            process.kill()
        try:
            process.wait(1.0)
        except subprocess.TimeoutExpired:
            process.kill()
            try:
                process.wait(1.0)
            except subprocess.TimeoutExpired:  # stuck in the kernel: reaped by the system when it ends, not waited for
                logger.warning("the verifier process (pid %d) did not end when killed", process.pid)


class _SharedChecks(Checks):
    """A batch's events, a chunk at a time: to the verifier process (started with the first full chunk, if no batch
    of :data:`START_AT` did: a batch in its turn smaller than a chunk is opened here), or opened here meanwhile —
    every other chunk, and the last, smaller one — so that both sides work at once. Opened ahead (``ahead``), every
    chunk goes to the process: the ingest's thread is busy storing the batch before."""

    def __init__(self, verifier: ProcessVerifier, *, ahead: bool = False) -> None:
        super().__init__()
        self._verifier = verifier
        self._ahead = ahead
        self._taken = verifier.taken(True)
        self._connection: Pipe | None = None
        self._usable = self._taken  # a verifier closed meanwhile: every check made here
        self._chunk: list[tuple[VerifyKey, bytes]] = []
        # In order: the answers of a chunk opened here (or collected), or a chunk sent (its number and events).
        self._parts: list[list[Answer] | tuple[int, list[tuple[VerifyKey, bytes]]]] = []
        self._unanswered: deque[int] = deque()  # the parts sent and not collected, in the order sent
        self._sent_last = False

    def add(self, key: VerifyKey, data: bytes) -> None:
        self._chunk.append((key, data))
        if len(self._chunk) == CHUNK:
            chunk, self._chunk = self._chunk, []
            if (self._ahead or not self._sent_last) and self._send(chunk):
                self._sent_last = True
            else:
                self._parts.append([open_event(k, d) for k, d in chunk])
                self._sent_last = False

    def send_all(self) -> None:
        if self._chunk and self._send(self._chunk):
            self._chunk = []

    def _send(self, chunk: list[tuple[VerifyKey, bytes]]) -> bool:
        """Hand ``chunk`` to the process; False if it cannot take it (it is then opened here)."""
        if not self._usable:
            return False
        if self._connection is None:
            self._connection = self._verifier.connected()
            if self._connection is None:
                self._usable = False
                return False
        number = self._verifier.number()
        try:
            data = pickle.dumps((number, [(bytes(k), d) for k, d in chunk]), protocol=pickle.HIGHEST_PROTOCOL)
            self._connection.send_bytes(data, self._verifier.answer_timeout_s)
        except (OSError, ValueError) as exc:
            self._broken(exc)
            return False
        self._unanswered.append(len(self._parts))
        self._parts.append((number, chunk))
        while len(self._unanswered) > MAX_UNANSWERED:
            self._collect()  # no more than that many chunks' answers wait in the pipe
        return True

    def results(self) -> list[Answer]:
        """The answers of every event added, in order: the process's, and those opened here meanwhile."""
        try:
            if self._chunk:
                self._parts.append([open_event(k, d) for k, d in self._chunk])
                self._chunk = []
            while self._unanswered:
                self._collect()
            return [answer for part in self._parts if isinstance(part, list) for answer in part]
        finally:
            self.abandon()

    def abandon(self) -> None:
        """Answers of chunks sent and not collected are skipped by the next batch (:meth:`_answers`)."""
        self._connection = None
        if self._taken:
            self._taken = False
            self._verifier.taken(False)

    def _collect(self) -> None:
        at = self._unanswered.popleft()
        number, chunk = cast(tuple[int, list[tuple[VerifyKey, bytes]]], self._parts[at])
        self._parts[at] = self._answers(number, chunk)

    def _answers(self, number: int, chunk: list[tuple[VerifyKey, bytes]]) -> list[Answer]:
        """The process's answers to chunk ``number``; the events it could not open, opened here. Answers to an older
        chunk (of a batch that failed before it read them) are skipped: an answer is only ever taken for the very
        events it answers."""
        answers: list[Answer | None] = [None] * len(chunk)
        if self._connection is not None:
            deadline = time.monotonic() + self._verifier.answer_timeout_s
            try:
                while True:
                    if not self._connection.poll(max(0.0, deadline - time.monotonic())):
                        raise TimeoutError(f"no answer within {self._verifier.answer_timeout_s:g} s")
                    answered, given = pickle.loads(self._connection.recv_bytes())
                    if answered == number and isinstance(given, list) and len(given) == len(chunk):
                        if not all(answer is None or well_formed(answer) for answer in given):
                            raise ValueError(f"answers to chunk {number} not of the shape of an answer")
                        answers = given
                        self._verifier.answered += sum(answer is not None for answer in given)
                        break
                    if not (isinstance(answered, int) and answered < number):
                        raise ValueError(f"answers to chunk {answered!r} where {number} was expected")
            except Exception as exc:  # noqa: BLE001 - whatever it is (garbled bytes too), the process is not trusted
                self._broken(exc)
        return [open_event(k, d) if answer is None else answer for answer, (k, d) in zip(answers, chunk, strict=True)]

    def _broken(self, exc: BaseException) -> None:
        connection, self._connection, self._usable = self._connection, None, False
        self._verifier.failed(exc, connection)
