"""The verifier process itself (:mod:`server.ingest.verifier` hands it the events to open): how it is started, in
its own interpreter, and what it does — open each chunk of events it reads, and write back the answers."""

from __future__ import annotations

import fcntl
import json
import logging
import os
import pickle
import signal
import subprocess
import sys
from pathlib import Path

from seal_protocol.signing import VerifyKey
from server.core.stop_signals import STOP_SIGNALS, stop_signals_blocked, unblock_stop_signals
from server.ingest.opened import Answer, open_event
from server.ingest.verifier_pipe import Pipe, read_frame, write_frame

logger = logging.getLogger(__name__)

#: Keys the verifier process keeps (a seal's key is parsed once, not per event).
KEYS_KEPT = 10_000

#: What the verifier process says first, as chunk 0, once it can check.
READY = "ready"


#: How the verifier process starts: in isolated mode (``-I``: nothing from its working directory or the environment on
#: its module path) with this process's module path (``sys.path``, as :mod:`multiprocessing`'s spawn passes it), so
#: that it runs this very code. ``-m`` would put the working directory first: a ``server`` package planted there
#: (a server started in /tmp) would be run, and answer every signature "good".
BOOT = (
    "import json, sys; sys.path[:] = json.loads(sys.argv[1]); from server.ingest.verifier_process import main; main()"
)


def start() -> tuple[subprocess.Popen[bytes], Pipe]:
    """A verifier process (a fresh interpreter that imports only what it needs — not this process's main module —
    and inherits none of its threads) and the pipe to it."""
    to_read, to_write = os.pipe()
    from_read, from_write = os.pipe()
    for fd in (to_write, from_write):
        _enlarge(fd)
    try:
        command = [sys.executable, "-I", "-c", BOOT, json.dumps(sys.path), str(to_read), str(from_write)]
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


#: What each pipe to and from a verifier process may hold: a batch of 500 events and their answers (≈ 300 KB and
#: 600 KB), so that the process can open a batch ahead while the ingest, storing the one before, reads nothing.
PIPE_SIZE = 1 << 20


def _enlarge(fd: int) -> None:
    """Make the pipe of ``fd`` hold :data:`PIPE_SIZE` (or as much as the system lets: ``fs.pipe-max-size``)."""
    try:
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
        return
    except OSError:
        pass
    try:
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, int(Path("/proc/sys/fs/pipe-max-size").read_text()))
    except (OSError, ValueError) as exc:  # fs.pipe-user-pages-soft reached: it works, with less overlap
        logger.warning("the pipes to the verifier process stay small (%s): batches overlap less", exc)


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
            answers = [_answer(keys, key, data) for key, data in jobs]
            write_frame(send, pickle.dumps((number, answers), protocol=pickle.HIGHEST_PROTOCOL))
    except OSError:  # a broken pipe: the ingest is gone
        return


def _answer(keys: dict[bytes, VerifyKey], key: bytes, data: bytes) -> Answer | None:
    """The event opened; None if opening it raised (a defect): the ingest then opens it itself, and deals with what
    it raises there — that message alone is quarantined — instead of losing this process to one message."""
    try:
        verify_key = keys.get(key)
        if verify_key is None:
            verify_key = keys[key] = VerifyKey(key)
        return open_event(verify_key, data)
    except Exception:  # noqa: BLE001 - answered "open it yourself"
        return None


def main() -> None:
    """The verifier process's entry point (:data:`BOOT`): ``argv`` ends with the pipes' two descriptors.

    It ignores the signals that stop the ingest, which a stop often sends to every process at once (a Ctrl-C, systemd's
    stop): it ends when the ingest, after the batch in hand, closes the pipe, or is gone (the pipe's end as well).
    Ended first, it would cost that batch a failure counted and logged for nothing."""
    for stop in STOP_SIGNALS:  # blocked since its start: one that came meanwhile is dropped now
        signal.signal(stop, signal.SIG_IGN)
    unblock_stop_signals()
    serve(int(sys.argv[-2]), int(sys.argv[-1]))
