"""The signals that stop the court's processes, and child processes that take them only once they can stop.

A stop often reaches every process at once: a Ctrl-C the terminal's foreground process group, systemd's stop (its
default ``KillMode=control-group``) every process of the unit. A child process that gets it while it starts, before
it has said what the signal does, dies of it (SIGTERM) or prints a KeyboardInterrupt traceback from the middle of its
imports (SIGINT). Started inside :func:`stop_signals_blocked` (a signal mask is inherited through fork and exec), it
gets none until it has set its own handling and calls :func:`unblock_stop_signals`: one that came meanwhile is
delivered then, or dropped if it chose to ignore them.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextmanager
def stop_signals_blocked() -> Iterator[None]:
    """Block the stop signals in this thread while in the block: a process started meanwhile starts with them
    blocked. This thread gets any that came meanwhile when the block ends."""
    unblocked = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, unblocked)


def unblock_stop_signals() -> None:
    """In a process started inside :func:`stop_signals_blocked`, once its handling of them is set."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)


#: How often :func:`wait_for_stop` looks.
STOP_POLL_S = 0.1


class StopFlag:
    """Set by a stop signal's handler, looked at by :func:`wait_for_stop`. A plain attribute, not a
    :class:`threading.Event`: a handler runs between two of the main thread's bytecodes, or inside another handler
    (a worker gets SIGTERM from systemd and from its parent at once), and an event's ``set`` would then wait
    forever for the lock that the interrupted code holds."""

    def __init__(self) -> None:
        self._set = False

    def set(self) -> None:
        self._set = True

    def is_set(self) -> bool:
        return self._set


def wait_for_stop(stop: StopFlag, timeout: float | None = None) -> bool:
    """Whether ``stop`` was set within ``timeout`` (None: wait for it), looking every :data:`STOP_POLL_S`."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while not stop.is_set():
        left = STOP_POLL_S if deadline is None else min(STOP_POLL_S, deadline - time.monotonic())
        if left <= 0:
            return False
        time.sleep(left)
    return True
