"""What the seal's core needs from the world. Hardware and network adapters implement these protocols.

The core (:mod:`seal_agent.core`) depends only on these; the adapters (:mod:`seal_agent.pir`,
:mod:`seal_agent.speaker`, :mod:`seal_agent.mqtt`) implement them with gpiozero, simpleaudio and paho.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Protocol

#: Called with no arguments on motion start or end. Runs on the sensor library's thread: return quickly.
MotionHandler = Callable[[], None]
#: Called with (seq, failure). ``failure`` is None when the broker acknowledged the event, else its reason.
AckHandler = Callable[[int, str | None], None]
#: Called with True after a successful CONNACK and False when the connection is lost.
ConnectionHandler = Callable[[bool], None]


class MotionSource(Protocol):
    """A presence sensor (the PIR)."""

    def set_handlers(self, *, on_start: MotionHandler, on_end: MotionHandler) -> None:
        """Call ``on_start`` when presence begins and ``on_end`` when it ends."""

    @property
    def is_active(self) -> bool:
        """True while the sensor reports presence."""

    def close(self) -> None:
        """Release the sensor; no handler is called afterwards."""


class Speaker(Protocol):
    """Plays the spoken warning."""

    def play_warning(self) -> bool:
        """Start the warning without blocking; False if one is already playing. Never raises on playback errors."""

    def stop(self) -> None:
        """Stop a warning that is playing."""

    def is_playing(self) -> bool:
        """True while a warning is playing."""


class Publisher(Protocol):
    """Sends encoded events to the court at QoS 1 and reports each broker acknowledgement."""

    def bind(self, *, on_ack: AckHandler, on_connection: ConnectionHandler) -> None:
        """Register the handlers; call before the first :meth:`publish_event`."""

    def publish_event(self, seq: int, data: bytes) -> None:
        """Hand over one event; its PUBACK is reported through ``on_ack(seq, failure)`` later.

        Raises :class:`seal_agent.errors.PublishError` if the client cannot take the message.
        """

    @property
    def connected(self) -> bool:
        """True between a successful CONNACK and the loss of that connection."""


class Clock(Protocol):
    """Time for the core: a monotonic clock for intervals and the wall clock for event timestamps."""

    def monotonic(self) -> float:
        """Seconds from an arbitrary origin; never goes backwards."""

    def now(self) -> datetime:
        """The current time, timezone-aware."""
