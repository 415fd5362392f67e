"""Generated video clips (written with cv2.VideoWriter at test time) and a monitor factory for the camera tests."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from seal_agent.camera import Camera, CameraMonitor

WIDTH, HEIGHT = 320, 240
CLIP_FPS = 10.0


def textured_scene(seed: int = 7) -> np.ndarray:
    """A still 'room': smooth random texture, far from uniform."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(30, 220, size=(HEIGHT // 16, WIDTH // 16, 3), dtype=np.uint8)
    return np.asarray(cv2.resize(coarse, (WIDTH, HEIGHT), interpolation=cv2.INTER_CUBIC), dtype=np.uint8)


def with_noise(image: np.ndarray, rng: np.random.Generator, sigma: float = 2.0) -> np.ndarray:
    """Sensor noise: a live camera never delivers two bit-identical frames."""
    noisy = image.astype(np.int16) + rng.normal(0, sigma, image.shape).astype(np.int16)
    return np.clip(noisy, 0, 255).astype(np.uint8)


def static_frames(count: int, seed: int = 1) -> Iterator[np.ndarray]:
    rng = np.random.default_rng(seed)
    scene = textured_scene()
    for _ in range(count):
        yield with_noise(scene, rng)


def moving_rectangle_frames(count: int, seed: int = 2) -> Iterator[np.ndarray]:
    """Someone (a dark 50x80 box) walking across the still scene."""
    rng = np.random.default_rng(seed)
    scene = textured_scene()
    for i in range(count):
        frame = scene.copy()
        x = 10 + (i * 12) % (WIDTH - 70)
        cv2.rectangle(frame, (x, 80), (x + 50, 160), (20, 20, 20), thickness=-1)
        yield with_noise(frame, rng)


def black_frames(count: int) -> Iterator[np.ndarray]:
    for _ in range(count):
        yield np.zeros((HEIGHT, WIDTH, 3), np.uint8)


def write_clip(path: Path, frames: Iterable[np.ndarray], fps: float = CLIP_FPS) -> Path:
    """Write ``frames`` as an MJPG .avi (the codec that works with OpenCV here)."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), fps, (WIDTH, HEIGHT))
    assert writer.isOpened(), "cv2.VideoWriter could not open an MJPG .avi"
    try:
        for frame in frames:
            writer.write(frame)
    finally:
        writer.release()
    assert path.stat().st_size > 0
    return path


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

    def wait_for(self, kind: str, timeout: float = 5.0) -> dict[str, int | str]:
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
