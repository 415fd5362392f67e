"""Whether the seal can store its events now, as its commits find out: the ``storage`` report of its status.

A card the kernel remounted read-only, one failing with I/O errors, or a full disk makes the outbox refuse every
commit (:class:`~seal_agent.errors.OutboxError`): the warning still plays, but the events wait in the recorder's line
in memory only, heartbeats are skipped and command answers fail. The court would only see the seal fall silent. So
the recorder tells :class:`StorageHealth` of each refused and each accepted commit, and whoever listens (the MQTT
publisher: its retained ``online`` status, docs/protocol.md "Status") is told, after each recording, what the seal can
truthfully say: a :class:`~seal_protocol.status.StorageReport` (why, how many events it holds in memory, since its
first refused commit) while the commits are refused, None again once one is accepted.
"""

from __future__ import annotations

import errno
import logging
import threading
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from seal_agent.errors import read_only
from seal_agent.journal.disk_room import is_disk_full
from seal_protocol import utc_now_ms
from seal_protocol.status import StorageFault, StorageReport

logger = logging.getLogger(__name__)

#: Told the seal's storage report after a recording changed it: None once the outbox commits again.
StorageListener = Callable[[StorageReport | None], None]


def _nobody(report: StorageReport | None) -> None:
    pass


class StorageHealth:
    """The outbox's commits, refused or not; ``state_dir``: where a refusal is checked for a read-only filesystem."""

    def __init__(self, state_dir: Path | None, now: Callable[[], datetime]) -> None:
        self._state_dir = state_dir
        self._now = now
        self._lock = threading.Lock()
        self._fault: tuple[StorageFault, str] | None = None  # (why, since) while commits are refused
        self._told: StorageReport | None = None
        #: Told each change of the report, under this object's lock (the recorder calls :meth:`tell` outside its
        #: own): it must return quickly and never record.
        self.listener: StorageListener = _nobody

    def refused(self, exc: BaseException) -> None:
        """A commit was refused for a condition of the disk or the database."""
        reason = self._reason(exc)
        with self._lock:
            if self._fault is None:
                logger.error("the seal cannot store events (%s: %s): held in memory, said in its status", reason, exc)
                self._fault = (reason, utc_now_ms(self._now()))
            elif self._fault[0] is not reason:
                self._fault = (reason, self._fault[1])

    def took(self) -> None:
        """A commit went through: the seal stores events again."""
        with self._lock:
            if self._fault is not None:
                logger.warning("the seal stores events again (refused since %s)", self._fault[1])
            self._fault = None

    @property
    def report(self) -> StorageReport | None:
        """The report last told: None while the seal stores its events."""
        with self._lock:
            return self._told

    def tell(self, held: int) -> None:
        """Tell the listener the report now, ``held`` events waiting in memory, if it changed since last told."""
        with self._lock:  # told in order: the last report told is the last one made
            fault = self._fault
            report = None if fault is None else StorageReport(fault[0], held, fault[1])
            if report != self._told:
                self._told = report
                self.listener(report)

    def _reason(self, exc: BaseException) -> StorageFault:
        causes: list[BaseException] = []
        cause: BaseException | None = exc
        while cause is not None and len(causes) < 8:
            causes.append(cause)
            cause = cause.__cause__ or cause.__context__
        if any(getattr(c, "errno", None) == errno.EROFS for c in causes):
            return StorageFault.READ_ONLY
        if self._state_dir is not None and read_only(self._state_dir):
            return StorageFault.READ_ONLY
        return StorageFault.FULL if is_disk_full(exc) else StorageFault.IO_ERROR
