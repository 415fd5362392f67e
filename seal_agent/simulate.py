"""Presence without a person: drives the PIR's gpiozero mock pin so the real agent runs on any computer."""

from __future__ import annotations

import logging
import threading

from gpiozero.pins.mock import MockFactory, MockPin

logger = logging.getLogger(__name__)


class PresenceSimulator:
    """Drives a mock PIR pin high for ``presence_s`` and then low again, on demand or periodically."""

    def __init__(self, factory: MockFactory, pin: int, *, presence_s: float) -> None:
        self._pin: MockPin = factory.pin(pin)
        self.presence_s = presence_s
        self._stop = threading.Event()
        self._lock = threading.Lock()

    def pulse(self) -> None:
        """One presence: the pin goes high, stays high ``presence_s`` (or until :meth:`stop`), then goes low."""
        with self._lock:
            logger.info("simulated presence for %.2f s", self.presence_s)
            self._pin.drive_high()
            self._stop.wait(self.presence_s)
            self._pin.drive_low()

    def run_every(self, period_s: float) -> None:
        """Pulse every ``period_s`` seconds until :meth:`stop` (blocking; run it on a thread)."""
        while not self._stop.is_set():
            self.pulse()
            self._stop.wait(max(0.0, period_s - self.presence_s))

    def stop(self) -> None:
        self._stop.set()
