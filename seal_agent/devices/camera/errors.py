"""Errors of the camera package. Each subclass also inherits the matching builtin."""

from __future__ import annotations


class CameraError(Exception):
    """Base class of every error raised by ``seal_agent.devices.camera``."""


class CameraUnavailable(CameraError, RuntimeError):
    """A backend could not be built (e.g. OpenCV is not installed). Read failures are states, never this."""


class FrameNotEncodable(CameraError, ValueError):
    """The JPEG encoder refuses a frame (e.g. wider or taller than 65,500 pixels, or not 1, 3 or 4 channels)."""
