"""What the seal needs from a camera, and the frame it passes around."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray

#: A BGR image as OpenCV returns it: ``height x width x 3``, ``uint8``.
Image = NDArray[np.uint8]


@runtime_checkable
class Camera(Protocol):
    """A source of frames.

    ``read()`` returns the next image, or ``None`` when no frame could be had this time (device gone, file ended,
    not opened yet). It must not raise for such failures: a failure is a state the monitor turns into
    ``camera_lost``. A backend may try to reopen its device on later calls. ``close()`` releases the device and
    is idempotent.
    """

    def read(self) -> Image | None: ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Frame:
    """One grabbed image and the monotonic time (seconds) at which it was read.

    ``blind`` is its :func:`~seal_agent.devices.camera.health.blind_reason` (``"uniform"``, ``"frozen"`` or
    ``None``). ``first_t`` is set on a frame bit-identical to the one before it: the time the first of that run of
    identical frames was read. Such a frame is no new view: its picture is as old as ``first_t`` (:attr:`view_t`),
    and it is never a snapshot (the first of the run is, once).
    """

    t: float
    image: Image
    blind: str | None = None
    first_t: float | None = None

    @property
    def repeat(self) -> bool:
        """It repeats the frame before it bit for bit: no new view."""
        return self.first_t is not None

    @property
    def view_t(self) -> float:
        """When the camera last showed a new picture: the time of what this frame shows."""
        return self.t if self.first_t is None else self.first_t


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A JPEG-encoded frame; ``t`` is its monotonic capture time, ``offset_s`` its time relative to the trigger."""

    t: float
    offset_s: float
    jpeg: bytes
