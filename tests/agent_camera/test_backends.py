"""The video-file and OpenCV backends, the source factory, and importing the package without OpenCV."""

from __future__ import annotations

import subprocess
import sys

import numpy as np

from seal_agent.devices.camera import OpenCVCamera, VideoFileCamera, open_camera
from tests.agent_camera.clips import HEIGHT, WIDTH


def grey_frames(count: int) -> list[np.ndarray]:
    """Frame ``i`` is uniformly grey at level ``10 * i``: a frame's mean tells which one it is."""
    return [np.full((HEIGHT, WIDTH, 3), 10 * i, np.uint8) for i in range(count)]


def index_of(image: np.ndarray | None) -> int:
    assert image is not None
    return round(float(image.mean()) / 10)


class FakeTime:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_video_file_plays_every_frame_then_ends(clip):
    camera = VideoFileCamera(clip("count", grey_frames(6)), loop=False)

    indices = [index_of(camera.read()) for _ in range(6)]

    assert indices == [0, 1, 2, 3, 4, 5]
    assert camera.read() is None and camera.ended and camera.read() is None


def test_video_file_loops(clip):
    camera = VideoFileCamera(clip("count", grey_frames(3)), loop=True)

    assert [index_of(camera.read()) for _ in range(7)] == [0, 1, 2, 0, 1, 2, 0]
    camera.close()
    assert camera.read() is None


def test_video_file_in_real_time_skips_and_waits_like_a_live_camera(clip):
    fake = FakeTime()
    camera = VideoFileCamera(
        clip("count", grey_frames(20), fps=10.0), realtime=True, clock=fake.clock, sleep=fake.sleep
    )

    assert index_of(camera.read()) == 0
    fake.now += 0.5  # half a second later at 10 fps: frame 5 is due
    assert index_of(camera.read()) == 5
    assert fake.slept == []
    assert index_of(camera.read()) == 6  # read again at once: waits 0.1 s for the next frame
    assert len(fake.slept) == 1 and abs(fake.slept[0] - 0.1) < 1e-6


def test_open_camera_reads_the_source_string(tmp_path):
    assert open_camera("") is None
    assert open_camera("   ") is None
    device = open_camera("99")
    assert isinstance(device, OpenCVCamera) and device.source == 99 and device.read() is None
    device.close()
    assert isinstance(open_camera("/dev/video99"), OpenCVCamera)
    file_camera = open_camera(str(tmp_path / "demo.avi"))
    assert isinstance(file_camera, VideoFileCamera) and file_camera.realtime and file_camera.loop
    assert file_camera.read() is None  # no such file yet: a failure, not an exception


def test_package_imports_without_loading_opencv():
    code = (
        "import sys\n"
        "import seal_agent.devices.camera as camera\n"
        "ring = camera.FrameRing\n"
        "config = camera.CameraConfig()\n"
        "assert 'cv2' not in sys.modules, 'cv2 imported eagerly'\n"
        "camera.CameraMonitor\n"
        "assert 'cv2' in sys.modules\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
