"""The stamps of the seal's MQTT connections, which only grow (docs/protocol.md, "Status").

The court orders a seal's statuses by the stamp of the connection each is about (:mod:`seal_protocol.status`). A
Raspberry Pi has no real-time clock: after a reboot it may restore a saved clock, behind its last connection's stamp,
and connect before NTP answers. Stamped with that clock, its ``online`` would be "older than the stored one" (the
Will of its last connection) and the court would show it offline while it talks. So each connection is stamped
``max(now, last + 1 ms)``, the last stamp kept in the state directory (``connection_stamp``), written — to a
temporary file, synced, renamed over the old one, the directory synced — before the CONNECT that carries it: a
crash at any point leaves the last stamp sent or a later one.

A full disk has no block for the temporary file (``ENOSPC``): the stamp is then written over the old one in place
(its 25 bytes at offset 0 of a file that already holds that many: no new block, one sector, which storage writes
whole) and synced. A stamp that cannot be kept either way (a read-only or broken card, a full disk) is held in memory
(:data:`UNKEPT_ROOM`): the connection still says its statuses — the seal's ``online`` is then how the court learns
that it cannot store its events — with the last stamp + 1 ms, logged once per outage; the next connection tries to
keep its stamp again. A process stamps each connection after every stamp it sent, kept or not.

Stamps held in memory only are lost at a reboot, and a Pi restores an old clock: a later boot must still stamp after
them, or the court would take its ``online`` for older than the Will of a connection it held in memory (``supersedes``:
equal or older stamps lose), and show the seal offline while it talks. So a process starts stamping after the kept
stamp + :data:`UNKEPT_ROOM`, and stamps held in memory only ever lie within that room after the stamp last kept
(1 ms apart: room for 1,000 connections — a seal tries at most once a second, so at least about 17 minutes of
trying). Beyond it, or with no stamp ever kept (no stamp file yet on a full disk, no state directory),
:meth:`ConnectionStamps.next` returns None (logged) and that connection carries no status at all — no Last Will, no
``online``, no goodbye — while its events flow as ever. The price: a seal restarted less than :data:`UNKEPT_ROOM`
after its last connection stamps up to that much ahead of its clock. The room is short on purpose: each process
keeps the stamp it started with, so with a room longer than the time a restart takes, a seal restarting in a loop
(systemd's ``Restart=always``) would stamp further ahead at each start, past the court's bound (a stamp over 5 minutes
ahead is ordered by when it was received, ``server.ingest.statuses``: a dead connection's Will could then beat the
live one's ``online``). A start takes over a second (systemd waits 2 s more): the lead stays under a second.

A stamp file that exists but holds no stamp (torn, unreadable) still says when it was last written: the next
stamp follows that moment (its mtime) too. The stamp it held is later than that only if the clock was behind the
stamps when it was written (set back before); the court's liveness check pages a silent seal whatever its statuses.

A seal whose clock was once far ahead keeps stamping after that moment until its clock passes it; the court orders
such stamps (later than its own clock + a skew) by when it received them instead.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from seal_protocol.envelope import parse_ts, utc_now_ms

logger = logging.getLogger(__name__)

#: The file in the seal's state directory holding its last connection's stamp.
STAMP_FILE = "connection_stamp"
#: How far after the stamp last kept a stamp held in memory only may lie, and how far after the kept stamp a process
#: starts stamping: a later boot stamps after any stamp that was held in memory. Shorter than a restart takes, so
#: that restarts in a loop do not add up a lead (see the module's docstring).
UNKEPT_ROOM = timedelta(seconds=1)
_STEP = timedelta(milliseconds=1)  # a stamp's resolution


def _now() -> datetime:
    return datetime.now(UTC)


class ConnectionStamps:
    """Makes each connection's stamp; ``path`` None keeps the last one in memory only (a seal without a state
    directory: tests, tools)."""

    def __init__(self, path: Path | None = None, *, clock: Callable[[], datetime] = _now) -> None:
        self.path = path
        self._clock = clock
        self._kept: datetime | None = self._read()  # the stamp the file holds (a later boot's floor)
        #: The last stamp given; a new process starts after the kept stamp's room (a stamp held in memory may lie
        #: there); at the calendar's end, the kept stamp itself.
        self._last: datetime | None = None if self._kept is None else _after(self._kept, UNKEPT_ROOM)
        self._unkept = 0  # stamps given since the last one kept (held in memory only)

    def next(self) -> str | None:
        """The next connection's stamp (the envelope's ``ts`` form), kept before it is returned, else held in memory
        within :data:`UNKEPT_ROOM` of the stamp last kept; None if neither (logged): that connection must send no
        status."""
        now = self._clock().astimezone(UTC)
        now = now.replace(microsecond=now.microsecond // 1000 * 1000)  # the stamp's resolution
        stamp = now if self._last is None or now > self._last else _after(self._last)
        if self._last is not None and now <= self._last:
            logger.info("clock %s is not after the last connection's stamp: stamped %s", utc_now_ms(now), stamp)
        text = utc_now_ms(stamp)
        if self.path is None:
            self._last = stamp
            return text
        problem = _keep(self.path, text)
        if problem is None:
            if self._unkept:
                logger.warning("connection stamp kept again in %s after %d held in memory", self.path, self._unkept)
            self._kept, self._last, self._unkept = stamp, stamp, 0
            return text
        return self._held(problem)

    def _held(self, problem: str) -> str | None:
        """A stamp held in memory only (its file could not be written: ``problem``): 1 ms after the last one given,
        if that lies within the room after the stamp last kept; else None."""
        stamp = None if self._last is None else _after(self._last)
        if self._kept is None or stamp is None or stamp > _after(self._kept, UNKEPT_ROOM) or stamp == self._last:
            logger.error(
                "cannot keep the connection stamp in %s (%s), nor hold one in memory (%s): "
                "this connection sends no status",
                self.path,
                problem,
                "no stamp kept before" if self._kept is None else "no room left after the last kept one",
            )
            return None
        if not self._unkept:  # once per outage: each later connection's stamp is held as well, until one is kept
            logger.error(
                "cannot keep the connection stamp in %s (%s): stamps held in memory until it can, from %s",
                self.path,
                problem,
                utc_now_ms(stamp),
            )
        self._last, self._unkept = stamp, self._unkept + 1
        return utc_now_ms(stamp)

    def _read(self) -> datetime | None:
        if self.path is None:
            return None
        try:
            text = self.path.read_text("ascii").strip()
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as exc:
            return self._garbled(f"cannot read it: {exc}")
        try:
            return parse_ts(text)
        except ValueError:
            return self._garbled(f"it holds no stamp: {text[:40]!r}")

    def _garbled(self, why: str) -> datetime | None:
        """The last stamp's floor when its file exists but holds no stamp (torn by an overwrite in place on a full
        disk, a failing card): the moment the file was last written (its mtime, by the clock that stamped it). The
        stamp it held was that moment, or later only if the clock was behind the stamps then. A reboot's clock,
        restored from long ago, would otherwise stamp this connection before the last one the court holds."""
        assert self.path is not None
        try:
            written = datetime.fromtimestamp(self.path.stat().st_mtime, UTC)
        except (OSError, OverflowError, ValueError) as exc:
            logger.error("%s: %s; nor can its time be read (%s): ignored", self.path, why, exc)
            return None
        written = written.replace(microsecond=written.microsecond // 1000 * 1000)
        logger.error("%s: %s; the next stamp follows its last write, %s", self.path, why, utc_now_ms(written))
        return written


def _after(last: datetime, step: timedelta = _STEP) -> datetime:
    """The stamp ``step`` (1 ms) after ``last``, or ``last`` itself past the calendar's end (9999-12-31T23:59:59.999Z,
    a kept file's word: the court bounds such a stamp by its own clock anyway)."""
    try:
        return last + step
    except OverflowError:
        return last


def _keep(path: Path, text: str) -> str | None:
    """Write ``text`` to ``path`` and sync it: replaced whole, else (a full disk) overwritten in place; what went
    wrong if neither worked, else None."""
    data = (text + "\n").encode("ascii")
    try:
        _replace(path, data)
        return None
    except OSError as exc:
        replace_error = exc
    try:
        _overwrite(path, data)
    except OSError as exc:
        return f"{replace_error}; in place: {exc}"
    logger.warning("connection stamp kept in place in %s (a new file failed: %s)", path, replace_error)
    return None


def _replace(path: Path, data: bytes) -> None:
    temporary = path.with_name(path.name + ".tmp")
    try:
        with open(temporary, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
    except OSError:
        with contextlib.suppress(OSError):  # a full disk: give back whatever it took
            temporary.unlink()
        raise
    os.replace(temporary, path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def _overwrite(path: Path, data: bytes) -> None:
    """Write ``data`` over the start of the existing file ``path`` and sync it: no new file, no new block on a full
    disk if the file already holds as many bytes (every stamp is as long); anything after it is cut off."""
    descriptor = os.open(path, os.O_WRONLY)  # no O_CREAT: a new file needs room
    try:
        if os.pwrite(descriptor, data, 0) != len(data):
            raise OSError(errno.EIO, "short write of the connection stamp")
        if os.fstat(descriptor).st_size > len(data):
            os.ftruncate(descriptor, len(data))
        os.fdatasync(descriptor)
    finally:
        os.close(descriptor)
