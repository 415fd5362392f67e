"""Generated video clips (written with cv2.VideoWriter at test time) and a monitor factory for the camera tests."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from seal_agent.devices.camera import Camera, CameraMonitor
from tests.agent_camera.clips import CLIP_FPS, write_clip


@pytest.fixture
def clip(tmp_path: Path) -> Callable[..., Path]:
    """``clip(name, frames, fps=10)`` → path of a freshly written clip in the test's temporary directory."""

    def make(name: str, frames: Iterable[np.ndarray], fps: float = CLIP_FPS) -> Path:
        return write_clip(tmp_path / f"{name}.avi", frames, fps)

    return make


class HealthLog:
    """Collects ``on_health`` calls and lets a test wait for a given kind, with a timeout."""

    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, int | str]]] = []
        self._changed = threading.Condition()

    def __call__(self, kind: str, details: dict[str, int | str]) -> None:
        with self._changed:
            self.events.append((kind, details))
            self._changed.notify_all()

    @property
    def kinds(self) -> list[str]:
        with self._changed:
            return [kind for kind, _ in self.events]

    def wait_for(self, kind: str, timeout: float = 30.0) -> dict[str, int | str]:
        with self._changed:
            found = self._changed.wait_for(lambda: any(k == kind for k, _ in self.events), timeout)
            assert found, f"no {kind} within {timeout} s; got {[k for k, _ in self.events]}"
            return next(details for k, details in self.events if k == kind)


@pytest.fixture
def health_log() -> HealthLog:
    return HealthLog()


@pytest.fixture
def monitor_factory(health_log: HealthLog) -> Iterator[Callable[..., CameraMonitor]]:
    """``monitor_factory(camera, **overrides)`` → a started, fast :class:`CameraMonitor`, stopped after the test."""
    started: list[CameraMonitor] = []

    def make(camera: Camera, **overrides: Any) -> CameraMonitor:
        options: dict[str, Any] = {
            "on_health": health_log,
            "fps": 20.0,
            "ring_seconds": 1.0,
            "blind_after_s": 0.4,
            "lost_after_s": 0.4,
            "motion_learning_frames": 5,
        }
        options.update(overrides)
        monitor = CameraMonitor(camera, **options)
        monitor.start()
        started.append(monitor)
        return monitor

    yield make
    for monitor in started:
        monitor.stop(timeout=2.0)
