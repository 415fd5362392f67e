"""The decoding and Ed25519 checks of an ingest batch's events, partly in a process of their own.

Decoding an event (JSON, the schema, the canonical form) and checking its signature are most of what the ingest's
thread does per event outside its transaction, and neither needs the database. With ``[mqtt] verifier_process`` the
ingest's thread hands the events of a batch whose seal's key it knows, a chunk at a time, to a verifier process that
decodes each and checks its signature (:func:`open_event`); it opens the last few itself meanwhile, then collects
the answers: this work runs beside the ingest's thread instead of in it, on another core, and outside this process's
interpreter lock.

The answers are what :func:`open_event` gives here, in the order the events were added: the envelope, the bytes its
signature covers and the signature's problem, or the decoding's refusal. Nothing is taken as decoded or checked
without an answer of that shape: if the process is gone or answers nonsense, this thread opens those events itself
(logged, counted), and a new process is started at a later batch.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable

from seal_protocol.signing import VerifyKey
from server.core.stop_signals import STOP_SIGNALS, stop_signals_blocked, unblock_stop_signals
from server.ingest.opened import Answer, Job, open_event, well_formed
from server.ingest.verifier_pipe import Pipe, read_frame, write_frame

logger = logging.getLogger(__name__)

#: Events sent to the verifier process at a time (≈ 40 KB; their answers ≈ 80 KB): the first chunk starts being
#: opened after this many are added, and the last (smaller) one is opened by the ingest's thread itself.
CHUNK = 64
#: After the verifier process failed, the ingest checks every signature itself for this long before starting another.
RESTART_AFTER_S = 30.0
#: Chunks sent and not yet answered, at most. The answers of the chunks beyond it are read before more is sent; and
#: while a send waits for room in the pipe, the answers that come are read meanwhile (:class:`Pipe`), so that neither
#: side can wait for the other with both pipes full.
MAX_UNANSWERED = 8
#: How long the ingest waits for the answers to one chunk (64 events take about 5 ms), or for the process to take a
#: chunk it sends (a full pipe), before it takes the process for stuck, stops it and checks those signatures itself.
ANSWER_TIMEOUT_S = 10.0
#: Keys the verifier process keeps (a seal's key is parsed once, not per event).
KEYS_KEPT = 10_000

#: What the verifier process says first, as chunk 0, once it can check.
READY = "ready"


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

    def checks(self) -> Checks:
        return Checks()

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
        # The ingest's thread starts the process; the thread that stops the ingest may close it meanwhile.
        self._lock = threading.Lock()

    def checks(self) -> Checks:
        if self._closed:
            return Checks()
        if self._connection is None and self._failed_at is not None:
            if time.monotonic() - self._failed_at < self.restart_after_s:
                return Checks()  # checked here for a while after a failure
        return _SharedChecks(self)

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
            except (OSError, EOFError, ValueError, pickle.UnpicklingError) as exc:
                self.failed(exc)
                return None
        return connection if self._ready else None

    def _start(self) -> bool:
        """Start a verifier process; False if the verifier is closed, or if it cannot be started (logged, counted)."""
        with self._lock:
            if self._closed:
                return False
            try:
                self._process, self._connection = _start()
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

    def failed(self, exc: BaseException) -> None:
        if self._closed:
            return  # closed under a batch in hand (a stop that did not wait for it): the batch checks the rest itself
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
            process.wait(1.0)


#: How the verifier process starts: in isolated mode (``-I``: nothing from its working directory or the environment on
#: its module path) with this process's module path (``sys.path``, as :mod:`multiprocessing`'s spawn passes it), so
#: that it runs this very code. ``-m`` would put the working directory first: a ``server`` package planted there
#: (a server started in /tmp) would be run, and answer every signature "good".
_BOOT = "import json, sys; sys.path[:] = json.loads(sys.argv[1]); from server.ingest.verifier import main; main()"


def _start() -> tuple[subprocess.Popen[bytes], Pipe]:
    """A verifier process (a fresh interpreter that imports only what it needs — not this process's main module —
    and inherits none of its threads) and the pipe to it."""
    to_read, to_write = os.pipe()
    from_read, from_write = os.pipe()
    try:
        command = [sys.executable, "-I", "-c", _BOOT, json.dumps(sys.path), str(to_read), str(from_write)]
        with stop_signals_blocked():  # until main() ignores them
            process = subprocess.Popen(command, pass_fds=(to_read, from_write), stdin=subprocess.DEVNULL)
    except BaseException:
        for fd in (to_write, from_read):
            os.close(fd)
        raise
    finally:
        os.close(to_read)
        os.close(from_write)
    return process, Pipe(to_write, from_read)


class _SharedChecks(Checks):
    """Each full chunk goes to the verifier process (started with the first: a batch smaller than a chunk, as at a
    low rate, is opened here and starts nothing); the rest is opened here, unless :meth:`send_all` sent it too."""

    def __init__(self, verifier: ProcessVerifier) -> None:
        super().__init__()
        self._verifier = verifier
        self._taken = verifier.taken(True)
        self._connection: Pipe | None = None
        self._usable = self._taken  # a verifier closed meanwhile: every check made here
        self._keys: list[VerifyKey] = []
        self._chunk: list[Job] = []
        self._sent: list[tuple[int, list[Job]]] = []
        self._answered: list[Answer] = []  # the answers of the first self._collected chunks sent
        self._collected = 0

    def add(self, key: VerifyKey, data: bytes) -> None:
        self._keys.append(key)
        self._chunk.append((bytes(key), data))
        if len(self._chunk) == CHUNK:
            self._send()

    def send_all(self) -> None:
        if self._chunk:
            self._send()

    def _send(self) -> None:
        """Hand the chunk in hand to the process (if it can take it: else it stays, to be opened here)."""
        if not self._usable:
            return
        if self._connection is None:
            self._connection = self._verifier.connected()
            if self._connection is None:
                self._usable = False
                return
        number = self._verifier.number()
        try:
            data = pickle.dumps((number, self._chunk), protocol=pickle.HIGHEST_PROTOCOL)
            self._connection.send_bytes(data, self._verifier.answer_timeout_s)
        except (OSError, ValueError) as exc:
            self._broken(exc)
            return
        self._sent.append((number, self._chunk))
        self._chunk = []
        while len(self._sent) - self._collected > MAX_UNANSWERED:
            self._collect()  # more answers than the pipes hold are never left unread

    def results(self) -> list[Answer]:
        """The answers of the chunks sent, then of the rest, opened here meanwhile."""
        try:
            unsent = self._keys[len(self._keys) - len(self._chunk) :]
            rest = [open_event(key, data) for key, (_, data) in zip(unsent, self._chunk, strict=True)]
            while self._collected < len(self._sent):
                self._collect()
            return self._answered + rest
        finally:
            self.abandon()

    def abandon(self) -> None:
        """Answers of chunks sent and not collected are skipped by the next batch (:meth:`_answers`)."""
        self._connection = None
        if self._taken:
            self._taken = False
            self._verifier.taken(False)

    def _collect(self) -> None:
        number, chunk = self._sent[self._collected]
        self._answered += self._answers(number, chunk)
        self._collected += 1

    def _answers(self, number: int, chunk: list[Job]) -> list[Answer]:
        """The process's answers to chunk ``number``. Answers to an older chunk (of a batch that failed before it
        read them) are skipped: an answer is only ever taken for the very checks it answers."""
        if self._connection is not None:
            deadline = time.monotonic() + self._verifier.answer_timeout_s
            try:
                while True:
                    if not self._connection.poll(max(0.0, deadline - time.monotonic())):
                        raise TimeoutError(f"no answer within {self._verifier.answer_timeout_s:g} s")
                    answered, answers = pickle.loads(self._connection.recv_bytes())
                    if answered == number and isinstance(answers, list) and len(answers) == len(chunk):
                        if not all(well_formed(answer) for answer in answers):
                            raise ValueError(f"answers to chunk {number} not of the shape of an answer")
                        return answers
                    if not (isinstance(answered, int) and answered < number):
                        raise ValueError(f"answers to chunk {answered!r} where {number} was expected")
            except (OSError, EOFError, ValueError, TypeError, pickle.UnpicklingError) as exc:
                self._broken(exc)
        keys: dict[bytes, VerifyKey] = {}
        return [open_event(keys.setdefault(k, VerifyKey(k)), data) for k, data in chunk]

    def _broken(self, exc: BaseException) -> None:
        self._connection, self._usable = None, False
        self._verifier.failed(exc)


def serve(receive: int, send: int) -> None:
    """The verifier process: answer each chunk of events until the ingest closes its end (or is gone: an ingest
    killed, or stopped while this process starts, reads no hello or answer, and that ends this process as quietly)."""
    keys: dict[bytes, VerifyKey] = {}
    try:
        write_frame(send, pickle.dumps((0, READY)))
        while (frame := read_frame(receive)) is not None:
            number, jobs = pickle.loads(frame)
            if len(keys) > KEYS_KEPT:
                keys.clear()
            answers = []
            for key, data in jobs:
                verify_key = keys.get(key)
                if verify_key is None:
                    verify_key = keys[key] = VerifyKey(key)
                answers.append(open_event(verify_key, data))
            write_frame(send, pickle.dumps((number, answers), protocol=pickle.HIGHEST_PROTOCOL))
    except OSError:  # a broken pipe: the ingest is gone
        return


def main() -> None:
    """The verifier process's entry point (:data:`_BOOT`): ``argv`` ends with the pipes' two descriptors.

    It ignores the signals that stop the ingest, which a stop often sends to every process at once (a Ctrl-C, systemd's
    stop): it ends when the ingest, after the batch in hand, closes the pipe, or is gone (the pipe's end as well).
    Ended first, it would cost that batch a failure counted and logged for nothing."""
    for stop in STOP_SIGNALS:  # blocked since its start: one that came meanwhile is dropped now
        signal.signal(stop, signal.SIG_IGN)
    unblock_stop_signals()
    serve(int(sys.argv[-2]), int(sys.argv[-1]))
