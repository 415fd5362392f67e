"""The stamps of the seal's MQTT connections, which only grow (docs/protocol.md, "Status").

The court orders a seal's statuses by the stamp of the connection each is about (:mod:`seal_protocol.status`). A
Raspberry Pi has no real-time clock: after a reboot it may restore a saved clock, behind its last connection's stamp,
and connect before NTP answers. Stamped with that clock, its ``online`` would be "older than the stored one" (the
Will of its last connection) and the court would show it offline while it talks. So each connection is stamped
``max(now, last + 1 ms)``, the last stamp kept in the state directory (``connection_stamp``), written — to a
temporary file, synced, renamed over the old one, the directory synced — before the CONNECT that carries it: a
crash at any point leaves the last stamp sent or a later one.

A seal whose clock was once far ahead keeps stamping after that moment until its clock passes it; the court orders
such stamps (later than its own clock + a skew) by when it received them instead.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from seal_protocol.envelope import parse_ts, utc_now_ms

logger = logging.getLogger(__name__)

#: The file in the seal's state directory holding its last connection's stamp.
STAMP_FILE = "connection_stamp"
_STEP = timedelta(milliseconds=1)  # a stamp's resolution


def _now() -> datetime:
    return datetime.now(UTC)


class ConnectionStamps:
    """Makes each connection's stamp; ``path`` None keeps the last one in memory only (a seal without a state
    directory: tests, tools)."""

    def __init__(self, path: Path | None = None, *, clock: Callable[[], datetime] = _now) -> None:
        self.path = path
        self._clock = clock
        self._last: datetime | None = self._read()

    def next(self) -> str:
        """The next connection's stamp (the envelope's ``ts`` form), kept before it is returned. A state directory
        that cannot be written is logged, and the stamp is used all the same (it still grows while the agent runs)."""
        now = self._clock().astimezone(UTC)
        now = now.replace(microsecond=now.microsecond // 1000 * 1000)  # the stamp's resolution
        stamp = now if self._last is None or now > self._last else _after(self._last)
        if self._last is not None and now <= self._last:
            logger.info("clock %s is not after the last connection's stamp: stamped %s", utc_now_ms(now), stamp)
        text = utc_now_ms(stamp)
        self._last = stamp
        if self.path is not None:
            try:
                _write(self.path, text)
            except OSError as exc:
                logger.error("cannot keep the connection stamp in %s: %s", self.path, exc)
        return text

    def _read(self) -> datetime | None:
        if self.path is None:
            return None
        try:
            text = self.path.read_text("ascii").strip()
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as exc:
            logger.error("cannot read the last connection stamp in %s: %s", self.path, exc)
            return None
        try:
            return parse_ts(text)
        except ValueError:
            logger.error("%s holds no stamp (%r): ignored", self.path, text[:40])
            return None


def _after(last: datetime) -> datetime:
    """The stamp after ``last``: 1 ms later, or ``last`` itself at the calendar's end (9999-12-31T23:59:59.999Z, a
    kept file's word: the court bounds such a stamp by its own clock anyway)."""
    try:
        return last + _STEP
    except OverflowError:
        return last


def _write(path: Path, text: str) -> None:
    temporary = path.with_name(path.name + ".tmp")
    with open(temporary, "w", encoding="ascii") as file:
        file.write(text + "\n")
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
