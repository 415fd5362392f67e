"""The one background-loop mechanism of the server's periodic workers (liveness, notifications, commands)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

logger = logging.getLogger(__name__)


class RoundLoop:
    """A daemon thread that runs ``work`` at once, then every ``interval_s`` — or sooner after :meth:`wake` —
    until :meth:`stop`. A round that raises is logged with its traceback; the next round runs as planned."""

    def __init__(self, name: str, work: Callable[[], object], interval_s: float) -> None:
        self.name = name
        self.interval_s = interval_s
        self._work = work
        self._stopping = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def wake(self) -> None:
        """Run the next round now instead of at the end of the interval."""
        self._wake.set()

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._stopping.set()
        self._wake.set()
        thread.join(timeout)
        if thread.is_alive():
            logger.error("%s did not stop within %.1f s", self.name, timeout)

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                self._work()
            except Exception:  # a background worker must survive anything; the next round tries again
                logger.exception("%s: round failed", self.name)
            self._wake.wait(self.interval_s)
            self._wake.clear()
