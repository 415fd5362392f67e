"""A child process (started by :mod:`multiprocessing`) that stops when its parent is gone, however it went.

The parent of ``seal-server ingest --workers N``'s workers, killed (``kill -9``, the OOM killer, a supervisor that
kills the main process only), would leave them running, adopted by PID 1: connected to the database and the broker
with their client ids, which a restarted command's workers would then take from them, and they back, in turn.

Two ways, each enough alone:

- On Linux, ``prctl(PR_SET_PDEATHSIG, SIGTERM)``: the kernel sends the process SIGTERM as its parent ends (the
  parent's thread that started it: the main thread there). Asked for after the start, so a parent that ended before
  is seen by ``os.getppid()`` no longer being its pid.
- Anywhere, the pipe from the parent that :mod:`multiprocessing` keeps open in it
  (:func:`multiprocessing.parent_process`'s sentinel), whose end the system closes as the parent ends, however: a
  thread waits for that.
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing
import os
import signal
import sys
import threading
from multiprocessing.connection import wait

from server.core.stop_signals import StopFlag

logger = logging.getLogger(__name__)

#: From <linux/prctl.h>.
PR_SET_PDEATHSIG = 1


def stop_when_parent_ends(stop: StopFlag) -> None:
    """Set ``stop`` once this process's parent is gone (SIGTERM, whose handler should set it too, on Linux; the
    pipe from the parent anywhere). Nothing in a process not started by :mod:`multiprocessing`."""
    parent = multiprocessing.parent_process()
    if parent is None:
        return
    _death_signal(signal.SIGTERM)
    if os.getppid() != parent.pid:  # it ended before the kernel was asked to tell
        _gone(stop)
        return
    watcher = threading.Thread(target=_watch, args=(parent.sentinel, stop), name="parent-watch", daemon=True)
    watcher.start()


def _death_signal(sig: signal.Signals) -> None:
    """Ask Linux for ``sig`` as the parent ends; elsewhere, or refused, the pipe alone tells."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        # prctl is variadic, its arguments unsigned longs: passed as such, not as ctypes' default int
        if libc.prctl(ctypes.c_int(PR_SET_PDEATHSIG), ctypes.c_ulong(sig), *[ctypes.c_ulong(0)] * 3) != 0:
            raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
    except (OSError, AttributeError) as exc:
        logger.warning("prctl(PR_SET_PDEATHSIG) failed (%s): the pipe from the parent alone tells when it ends", exc)


def _watch(sentinel: int, stop: StopFlag) -> None:
    wait([sentinel])  # ready (at its end) once the parent's end is closed: the parent ended
    _gone(stop)


def _gone(stop: StopFlag) -> None:
    logger.warning("the parent process is gone: this process stops (after the batch in hand)")
    stop.set()
