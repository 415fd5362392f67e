"""The enclosure's tamper switch through gpiozero.

Wiring (see hardware/PINOUT.md): a microswitch that is *closed* while the lid is shut, between the configured BCM
GPIO (default GPIO27 = physical pin 13) and ground (pin 14). The Pi's internal pull-up holds the pin high when the
switch opens, so: lid shut → pin low; lid opened (or the wire cut) → pin high → ``tamper``. A cut wire thus reads
as an opened lid, which is the safe failure.

gpiozero's devices pass on a *change* of their state only, so an opening edge reaching a device that still believes
the lid open (the pin factory lost the shutting edge in between) would call no handler, and that reopening would go
unseen (the seal's level check misses a shut shorter than its settle time). An edge to the level the device is
already at is itself proof that the pin left that level: :class:`TamperSwitch` then reports the lost edge first
(shut), then this one (opened). An edge to "shut" while believed shut is an opening lost whole; it is logged only (a
tamper event for it would need a time nobody observed) — the level check catches an opening that lasts.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from gpiozero import DigitalInputDevice, GPIOZeroError
from gpiozero.pins import Factory

from seal_agent.errors import HardwareError
from seal_agent.interfaces import MotionHandler

logger = logging.getLogger(__name__)

#: A microswitch bounces for a few milliseconds when it opens or closes.
DEFAULT_BOUNCE_S = 0.05


class _EveryEdge(DigitalInputDevice):
    """A digital input that also tells of each edge to the state it already had (``on_repeat(active)``), which
    gpiozero's own events de-duplicate: the edge to the other state, in between, was lost."""

    on_repeat: Callable[[bool], None] | None = None

    def _pin_changed(self, ticks: Any, state: Any) -> None:  # called by the pin factory on every edge
        repeat, active = self.on_repeat, bool(self._state_to_value(state))
        if repeat is not None and self._last_active is not None and active == self._last_active:
            repeat(active)
        super()._pin_changed(ticks, state)


class TamperSwitch:
    """The lid switch on one GPIO, edge-driven; implements :class:`~seal_agent.interfaces.Switch` (active = open).

    gpiozero's ``pull_up=True`` makes the device *active low* (active = switch closed = lid shut), so "opened" is
    the device's deactivation and :attr:`is_active` (lid open) is the device's ``not is_active``.
    """

    def __init__(self, pin: int, *, bounce_s: float | None = DEFAULT_BOUNCE_S, pin_factory: Factory | None = None):
        try:
            self._device = _EveryEdge(pin, pull_up=True, bounce_time=bounce_s, pin_factory=pin_factory)
        except GPIOZeroError as exc:
            raise HardwareError(f"cannot open the tamper switch on GPIO{pin}: {exc}") from exc
        self.pin = pin
        logger.info("tamper switch on GPIO%d (pull-up, edge-driven; lid %s)", pin, "open" if self.is_active else "shut")

    def set_handlers(self, *, on_start: MotionHandler, on_end: MotionHandler) -> None:
        """``on_start``: the lid was opened; ``on_end``: it was shut again (also when only the next opening's edge
        shows it, its own lost)."""
        self._device.when_deactivated = on_start
        self._device.when_activated = on_end

        def repeated(shut: bool) -> None:
            if shut:
                logger.error("tamper switch: a shutting edge while shut; the opening before it was lost")
                return
            logger.warning("tamper switch: an opening edge while open; the shutting edge before it was lost")
            on_end()
            on_start()

        self._device.on_repeat = repeated

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
