"""The seal's camera: backends behind a small :class:`Camera` protocol and the :class:`CameraMonitor` (motion,
blindness, loss, snapshots around an intrusion). The journal keeps the snapshots (:mod:`seal_agent.journal`).

Importing this package does not import OpenCV; the names that need it (the backends and the monitor) are loaded on
first use, so a seal configured without a camera runs without ``cv2`` installed.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .base import Camera, Frame, Image, Snapshot
from .burst import SnapshotBurst, SnapshotCallback
from .config import CameraConfig
from .errors import CameraError, CameraUnavailable, FrameNotEncodable
from .health import CAMERA_BLIND, CAMERA_FOUND, CAMERA_LOST, CAMERA_RECOVERED, CameraState, HealthEvent
from .ring import FrameRing

if TYPE_CHECKING:
    from .monitor import CameraMonitor, HealthCallback, MotionVerdict
    from .motion import MotionDetector, encode_jpeg
    from .opencv_backend import OpenCVCamera, open_camera
    from .video_file import VideoFileCamera

_NEEDS_OPENCV = {
    "CameraMonitor": "monitor",
    "HealthCallback": "monitor",
    "MotionVerdict": "monitor",
    "MotionDetector": "motion",
    "encode_jpeg": "motion",
    "OpenCVCamera": "opencv_backend",
    "open_camera": "opencv_backend",
    "VideoFileCamera": "video_file",
}


def __getattr__(name: str) -> Any:
    module_name = _NEEDS_OPENCV.get(name)
    if module_name is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    try:
        module = importlib.import_module(f".{module_name}", __name__)
    except ImportError as exc:
        raise CameraUnavailable(f"{name} needs OpenCV (pip install opencv-python-headless): {exc}") from exc
    return getattr(module, name)


__all__ = [
    "CAMERA_BLIND",
    "CAMERA_FOUND",
    "CAMERA_LOST",
    "CAMERA_RECOVERED",
    "Camera",
    "CameraConfig",
    "CameraError",
    "CameraMonitor",
    "CameraState",
    "CameraUnavailable",
    "Frame",
    "FrameNotEncodable",
    "FrameRing",
    "HealthCallback",
    "HealthEvent",
    "Image",
    "MotionDetector",
    "MotionVerdict",
    "OpenCVCamera",
    "Snapshot",
    "SnapshotBurst",
    "SnapshotCallback",
    "VideoFileCamera",
    "encode_jpeg",
    "open_camera",
]
