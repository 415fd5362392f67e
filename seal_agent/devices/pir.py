"""The PIR presence sensor through gpiozero.

Wiring (HC-SR501 or similar): VCC → 5 V (physical pin 2), GND → ground (pin 6), OUT → the configured BCM GPIO
(e.g. GPIO17 = physical pin 11). OUT is a 3.3 V push-pull signal, high while the sensor sees presence (the
module itself holds it high for its "time" potentiometer setting and re-triggers while motion continues).
"""

from __future__ import annotations

import logging

from gpiozero import DigitalInputDevice, GPIOZeroError
from gpiozero.pins import Factory

from seal_agent.errors import HardwareError
from seal_agent.interfaces import MotionHandler

logger = logging.getLogger(__name__)

#: Glitch filter for the OUT line. The module's output is clean; this only rejects spikes picked up on a long cable.
DEFAULT_BOUNCE_S = 0.05


class PirSensor:
    """A PIR on one GPIO, implementing :class:`~seal_agent.interfaces.MotionSource`.

    Edge-driven on purpose: a ``DigitalInputDevice`` with ``bounce_time`` calls us from the pin factory's edge
    callback (lgpio on a Pi 5) the moment OUT changes. gpiozero's ``MotionSensor`` is a *smoothed, polled* device
    (``queue_len=1, sample_rate=10``): its callbacks fire ~100 ms after the edge, and an edge that happens before
    its first sample never fires ``when_motion`` at all, so a person already in front of the seal at boot would go
    unnoticed. The PIR module already does the smoothing (it holds OUT high), so polling buys nothing. An edge
    lost despite this (e.g. within the bounce window) is caught by ``SealAgent``'s periodic level check.
    """

    def __init__(self, pin: int, *, bounce_s: float | None = DEFAULT_BOUNCE_S, pin_factory: Factory | None = None):
        try:
            self._device = DigitalInputDevice(pin, pull_up=False, bounce_time=bounce_s, pin_factory=pin_factory)
        except GPIOZeroError as exc:
            raise HardwareError(f"cannot open the PIR on GPIO{pin}: {exc}") from exc
        self.pin = pin
        logger.info("PIR on GPIO%d (edge-driven, bounce %s s)", pin, bounce_s)

    def set_handlers(self, *, on_start: MotionHandler, on_end: MotionHandler) -> None:
        self._device.when_activated = on_start
        self._device.when_deactivated = on_end

    @property
    def is_active(self) -> bool:
        return bool(self._device.is_active)

    def close(self) -> None:
        self._device.close()  # also drops the handlers: none is called afterwards

    def __enter__(self) -> PirSensor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
