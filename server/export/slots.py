"""How many evidence exports run at once in this process: :data:`MAX_RUNNING` (one), each the rest of the server's
memory and a worker thread for as long as it takes (minutes for a large case). Another one is refused at once on the
API (:class:`~server.export.errors.ExportsBusy`: 503 with ``Retry-After``), or waited for by a command.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from server.export.errors import ExportsBusy

logger = logging.getLogger(__name__)

#: Exports at once, by default: one (an export's memory is bounded, its CPU and disk are not).
MAX_RUNNING = 1
#: What a refused client is told to wait (``Retry-After``), in seconds.
RETRY_AFTER_S = 30


class ExportSlots:
    """At most ``limit`` exports at once."""

    def __init__(self, limit: int = MAX_RUNNING) -> None:
        if limit < 1:
            raise ValueError(f"an export limit of {limit} would refuse every export")
        self.limit = limit
        self._free = threading.BoundedSemaphore(limit)

    @contextmanager
    def hold(self, *, wait: bool, waiting: Callable[[], None] | None = None) -> Iterator[None]:
        """A slot for the export in the ``with`` block: waited for if ``wait`` (``waiting`` called first, if one has
        to wait), else :class:`ExportsBusy` at once if none is free."""
        if not self._free.acquire(blocking=False):
            if not wait:
                logger.warning("an export refused: %d running, the most at once", self.limit)
                raise ExportsBusy(self.limit, RETRY_AFTER_S)
            if waiting is not None:
                waiting()
            self._free.acquire()
        try:
            yield
        finally:
            self._free.release()


#: The process's exports (the server's API and a command alike).
EXPORTS = ExportSlots()
