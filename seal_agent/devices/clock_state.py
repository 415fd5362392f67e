"""The kernel's word on the wall clock: whether it is synchronised (``adjtimex(2)``) and which boot this is.

A Raspberry Pi has no real-time clock: it boots at the last time it saved (days behind, after a long power cut) and
keeps that time until NTP steps it. Only the kernel knows whether that has happened: ``adjtimex`` with ``modes`` 0
changes nothing and returns the clock's state. ``STA_UNSYNC`` in ``status``, or the return value ``TIME_ERROR``,
means the clock is not synchronised (the kernel sets ``STA_UNSYNC`` at boot and whenever ``maxerror`` passes 16 s;
an NTP daemon clears it once it disciplines the clock); ``maxerror`` is the kernel's bound on the clock's error, in
microseconds. Where ``adjtimex`` cannot be called (not Linux, a refusal) the state is unknown, with the reason:
never a guess that the clock is right.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from seal_agent.interfaces import ClockSync

logger = logging.getLogger(__name__)

#: ``status`` bit: the clock is not synchronised (``<sys/timex.h>``).
STA_UNSYNC = 0x0040
#: ``adjtimex``'s return value for a clock that is not synchronised.
TIME_ERROR = 5
#: Where the kernel gives the random id of this boot (a new one at every boot).
BOOT_ID_PATH = Path("/proc/sys/kernel/random/boot_id")


class _Timeval(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_usec", ctypes.c_long)]


class _Timex(ctypes.Structure):
    """``struct timex`` of ``<sys/timex.h>`` for the ``adjtimex`` symbol (``long`` fields, the C library's ABI)."""

    _fields_ = [
        ("modes", ctypes.c_uint),
        ("offset", ctypes.c_long),
        ("freq", ctypes.c_long),
        ("maxerror", ctypes.c_long),
        ("esterror", ctypes.c_long),
        ("status", ctypes.c_int),
        ("constant", ctypes.c_long),
        ("precision", ctypes.c_long),
        ("tolerance", ctypes.c_long),
        ("time", _Timeval),
        ("tick", ctypes.c_long),
        ("ppsfreq", ctypes.c_long),
        ("jitter", ctypes.c_long),
        ("shift", ctypes.c_int),
        ("stabil", ctypes.c_long),
        ("jitcnt", ctypes.c_long),
        ("calcnt", ctypes.c_long),
        ("errcnt", ctypes.c_long),
        ("stbcnt", ctypes.c_long),
        ("tai", ctypes.c_int),
        ("_reserved", ctypes.c_int * 16),  # 11 in the header; room to spare, the kernel writes no further
    ]


class KernelClock:
    """The real :class:`~seal_agent.interfaces.ClockState`: ``adjtimex`` for the sync state, the boot id read once."""

    def __init__(self, boot_id_path: Path = BOOT_ID_PATH) -> None:
        self._adjtimex, self._unavailable = _load_adjtimex()
        self.boot_id = _read_boot_id(boot_id_path)

    def sync(self) -> ClockSync:
        """The wall clock's state now: synchronised or not with the kernel's bound on its error, or unknown."""
        if self._adjtimex is None:
            return ClockSync(None, None, self._unavailable)
        timex = _Timex()  # modes 0: read only
        ctypes.set_errno(0)
        state = self._adjtimex(ctypes.byref(timex))
        if state == -1:
            errno = ctypes.get_errno()
            return ClockSync(None, None, f"adjtimex failed: {os.strerror(errno)} (errno {errno})")
        synced = not timex.status & STA_UNSYNC and state != TIME_ERROR
        return ClockSync(synced, max(0, -(-int(timex.maxerror) // 1000)), None)  # µs, rounded up to ms


def _load_adjtimex() -> tuple[Callable[[Any], int] | None, str | None]:
    if not sys.platform.startswith("linux"):
        return None, f"adjtimex is Linux's; this is {sys.platform}"
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        adjtimex = libc.adjtimex
    except (OSError, AttributeError) as exc:
        return None, f"adjtimex cannot be loaded: {exc}"
    adjtimex.argtypes = [ctypes.POINTER(_Timex)]
    adjtimex.restype = ctypes.c_int
    return adjtimex, None


def _read_boot_id(path: Path) -> str | None:
    try:
        return path.read_text("ascii").strip() or None
    except (OSError, UnicodeDecodeError) as exc:
        logger.warning("the kernel's boot id cannot be read from %s: %s", path, exc)
        return None
