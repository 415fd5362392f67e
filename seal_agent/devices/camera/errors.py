"""Errors of the camera package. Each subclass also inherits the matching builtin."""

from __future__ import annotations


class CameraError(Exception):
    """Base class of every error raised by ``seal_agent.devices.camera``."""


class CameraUnavailable(CameraError, RuntimeError):
    """A backend could not be built (e.g. OpenCV is not installed). Read failures are states, never this."""
