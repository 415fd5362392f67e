"""Video clips generated at test time with cv2.VideoWriter: a still room, someone walking, a covered lens."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import cv2
import numpy as np

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
