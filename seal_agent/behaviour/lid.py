"""The enclosure's tamper switch, as the seal (:class:`~seal_agent.behaviour.seal.SealAgent`) handles its edges: an
opening warns unless the seal is disarmed and gives a ``tamper`` event — unless the switch is flapping
(:mod:`seal_agent.behaviour.sensor_bound`): its edges are then merged into a signed count, and an armed seal still
warns at each opening."""

from __future__ import annotations

import logging
import threading
from typing import Any

from seal_agent.behaviour.edge_gate import EdgeGate
from seal_agent.behaviour.levels import Caught, LevelCheck
from seal_agent.behaviour.sensor_bound import SensorBounds
from seal_agent.behaviour.triggers import TriggerResponder
from seal_agent.interfaces import Clock

logger = logging.getLogger("seal_agent.behaviour.seal")


class LidEdges:
    """The tamper switch's callbacks and their decisions (under the seal's lock); mixed into the seal."""

    _clock: Clock
    _tamper_level: LevelCheck
    _edges: EdgeGate
    _sensors: SensorBounds
    _respond: TriggerResponder
    _lock: threading.RLock
    _armed: bool
    _lid_open: bool

    def _tamper_opened(self, at_start: bool = False, caught: Caught | None = None) -> None:
        """The lid opened (its edge, or ``caught`` by the level check): warn unless disarmed; the event follows."""
        now = self._clock.monotonic()  # on the edge's thread, as a PIR edge's
        self._tamper_level.saw(True)
        self._edges.decide(lambda: self._lid_opened(now, at_start, {} if caught is None else caught.payload()))

    def _lid_opened(self, now: float, at_start: bool, detected: dict[str, Any]) -> None:  # under the lock
        full = self._sensors.edge("tamper", now, high=True, trigger=not self._lid_open)
        if self._lid_open:  # the same opening: its edge and the start-up reading, or a late edge after a catch
            logger.info("tamper switch: the lid reads open and is known open already; the same opening")
            return
        self._lid_open = True
        if not full:  # flapping: merged into a signed count; an armed seal warns at each opening all the same
            if self._armed:
                self._respond.play_warning()
            return
        self._respond.tamper(now, armed=self._armed, at_start=at_start, **detected)

    def _tamper_closed(self, caught: Caught | None = None) -> None:
        now = self._clock.monotonic()
        self._tamper_level.saw(False)
        self._edges.decide(lambda: self._lid_closed(now))
        logger.info("enclosure closed again%s", "" if caught is None else " (its edge was missed: the level says so)")

    def _lid_closed(self, now: float) -> None:  # under the lock
        self._sensors.edge("tamper", now, high=False)
        self._lid_open = False
