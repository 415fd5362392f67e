"""The enclosure's tamper switch through gpiozero.

Wiring (see hardware/PINOUT.md): a microswitch that is *closed* while the lid is shut, between the configured BCM
GPIO (default GPIO27 = physical pin 13) and ground (pin 14). The Pi's internal pull-up holds the pin high when the
switch opens, so: lid shut → pin low; lid opened (or the wire cut) → pin high → ``tamper``. A cut wire thus reads
as an opened lid, which is the safe failure.
"""

from __future__ import annotations

import logging

from gpiozero import DigitalInputDevice, GPIOZeroError
from gpiozero.pins import Factory

from seal_agent.errors import HardwareError
from seal_agent.interfaces import MotionHandler

logger = logging.getLogger(__name__)

#: A microswitch bounces for a few milliseconds when it opens or closes.
DEFAULT_BOUNCE_S = 0.05


class TamperSwitch:
    """The lid switch on one GPIO, edge-driven; implements :class:`~seal_agent.interfaces.Switch` (active = open).

    gpiozero's ``pull_up=True`` makes the device *active low* (active = switch closed = lid shut), so "opened" is
    the device's deactivation and :attr:`is_active` (lid open) is the device's ``not is_active``.
    """

    def __init__(self, pin: int, *, bounce_s: float | None = DEFAULT_BOUNCE_S, pin_factory: Factory | None = None):
        try:
            self._device = DigitalInputDevice(pin, pull_up=True, bounce_time=bounce_s, pin_factory=pin_factory)
        except GPIOZeroError as exc:
            raise HardwareError(f"cannot open the tamper switch on GPIO{pin}: {exc}") from exc
        self.pin = pin
        logger.info("tamper switch on GPIO%d (pull-up, edge-driven; lid %s)", pin, "open" if self.is_active else "shut")

    def set_handlers(self, *, on_start: MotionHandler, on_end: MotionHandler) -> None:
        """``on_start``: the lid was opened; ``on_end``: it was shut again."""
        self._device.when_deactivated = on_start
        self._device.when_activated = on_end

    @property
    def is_active(self) -> bool:
        """True while the lid is open (the pin reads high)."""
        return not self._device.is_active

    def close(self) -> None:
        self._device.close()

    def __enter__(self) -> TamperSwitch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
