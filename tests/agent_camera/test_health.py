"""camera_blind / camera_recovered / camera_lost / camera_found, from generated clips and failing sources."""

from __future__ import annotations

import itertools
import threading
import time

import numpy as np
import pytest

from seal_agent.devices.camera import CameraMonitor, OpenCVCamera, VideoFileCamera
from seal_agent.devices.camera.health import HealthTracker, blind_reason, repeats
from tests.agent_camera.clips import black_frames, static_frames, textured_scene, write_clip
from tests.agent_camera.drivers import ScriptedCamera


def test_black_clip_that_becomes_normal_is_blind_then_recovered(clip, monitor_factory, health_log):
    frames = itertools.chain(black_frames(20), static_frames(60))  # 1 s covered, then 3 s of the room at 20 fps
    monitor = monitor_factory(VideoFileCamera(clip("covered", frames), loop=False), lost_after_s=30.0)

    blind = health_log.wait_for("camera_blind")
    assert blind["reason"] == "uniform"
    assert isinstance(blind["after_ms"], int) and blind["after_ms"] >= 400
    health_log.wait_for("camera_recovered")
    assert monitor.wait_for_state("ok", timeout=30.0)
    assert health_log.kinds[:2] == ["camera_blind", "camera_recovered"]


def test_frozen_image_is_blind(clip, monitor_factory, health_log):
    scene = textured_scene()
    monitor = monitor_factory(VideoFileCamera(clip("frozen", [scene] * 20)))

    assert health_log.wait_for("camera_blind")["reason"] == "frozen"
    assert monitor.state == "blind"


def test_normal_scene_is_ok_and_never_blind(clip, monitor_factory, health_log):
    monitor = monitor_factory(VideoFileCamera(clip("room", static_frames(30))))

    assert monitor.wait_for_state("ok", timeout=30.0)
    now = time.monotonic()
    monitor.motion_verdict(now, now + 1.0, timeout=30.0)  # returns once a frame at now + 1 s (> blind_after_s) is in
    # (a loaded machine reads fewer of the clip's frames in that second: the count is waited for, not assumed)
    assert monitor.wait_for_observations(20, timeout=30.0)
    assert health_log.kinds == []
    assert monitor.state == "ok"


def test_nonexistent_device_is_lost(monitor_factory, health_log):
    camera = OpenCVCamera(99, reopen_interval_s=0.1)
    assert not camera.is_open
    monitor = monitor_factory(camera)

    lost = health_log.wait_for("camera_lost")
    assert lost["reason"] == "read_failed"
    assert monitor.state == "lost"


def test_missing_file_is_lost_then_found_when_it_appears(tmp_path, monitor_factory, health_log):
    path = tmp_path / "later.avi"
    monitor = monitor_factory(VideoFileCamera(path, reopen_interval_s=0.05))

    health_log.wait_for("camera_lost")
    write_clip(path, static_frames(20))
    found = health_log.wait_for("camera_found")
    assert isinstance(found["down_ms"], int) and found["down_ms"] >= 400
    assert monitor.wait_for_state("ok", timeout=30.0)
    assert health_log.kinds == ["camera_lost", "camera_found"]


def test_deleted_file_is_lost(clip, monitor_factory, health_log):
    path = clip("short", static_frames(5))
    monitor = monitor_factory(VideoFileCamera(path, loop=True, reopen_interval_s=0.05))
    assert monitor.wait_for_state("ok", timeout=30.0)

    path.unlink()  # at the end of the clip the camera reopens the path, as a replugged device would

    health_log.wait_for("camera_lost")
    assert monitor.state == "lost"


def test_clip_that_ends_is_lost(clip, monitor_factory, health_log):
    camera = VideoFileCamera(clip("once", static_frames(5)), loop=False)
    monitor = monitor_factory(camera)

    health_log.wait_for("camera_lost")
    assert camera.ended
    assert camera.frames_read == 5
    assert monitor.state == "lost"


class RaisingCamera:
    """A broken driver: ``read()`` raises."""

    def __init__(self) -> None:
        self.closed = threading.Event()

    def read(self) -> np.ndarray | None:
        raise OSError("driver exploded")

    def close(self) -> None:
        self.closed.set()


class HungCamera:
    """A driver whose ``read()`` blocks until released."""

    def __init__(self) -> None:
        self.release = threading.Event()

    def read(self) -> np.ndarray | None:
        self.release.wait(10.0)
        return None

    def close(self) -> None:
        self.release.set()


def test_camera_that_raises_is_lost_not_an_exception(health_log):
    camera = RaisingCamera()
    monitor = CameraMonitor(camera, on_health=health_log, fps=20.0, lost_after_s=0.3)
    monitor.start()
    try:
        assert health_log.wait_for("camera_lost")["reason"] == "read_failed"
    finally:
        monitor.stop(timeout=2.0)
    assert camera.closed.is_set()


def test_camera_whose_read_hangs_is_lost(monitor_factory, health_log):
    camera = HungCamera()
    try:
        monitor = monitor_factory(camera)
        assert health_log.wait_for("camera_lost")["reason"] == "read_stalled"
        assert monitor.state == "lost"
    finally:
        camera.release.set()


def test_callback_that_raises_does_not_stop_the_monitor(clip):
    calls: list[str] = []
    got_found = threading.Event()

    def on_health(kind: str, details: dict[str, int | str]) -> None:
        calls.append(kind)
        if kind == "camera_found":
            got_found.set()
        raise RuntimeError("subscriber bug")

    path = clip("room", static_frames(10))
    hidden = path.with_suffix(".hidden")
    path.rename(hidden)
    monitor = CameraMonitor(
        VideoFileCamera(path, reopen_interval_s=0.05), on_health=on_health, fps=20.0, lost_after_s=0.3
    )
    monitor.start()
    try:
        assert monitor.wait_for_state("lost", timeout=30.0)
        hidden.rename(path)
        assert got_found.wait(5.0)
    finally:
        monitor.stop(timeout=2.0)
    assert calls == ["camera_lost", "camera_found"]


def test_found_is_reported_when_its_frame_cannot_be_a_snapshot(monitor_factory, health_log):
    camera = ScriptedCamera()
    monitor = monitor_factory(camera)
    health_log.wait_for("camera_lost")
    burst = monitor.snapshots_around(time.monotonic(), before_s=0.0, after_s=10.0, max_frames=1)  # wants a new frame

    # A driver hiccup: an image too wide for JPEG (over 65,500 pixels), then the room. The wide image ends the loss
    # and JPEG cannot encode it for the waiting burst: camera_found is reported all the same, and the next frame
    # becomes the snapshot.
    wide = np.random.default_rng(7).integers(0, 256, (1, 70_000, 3), dtype=np.uint8)  # not blind: sensor noise
    camera.put(wide, *static_frames(40))

    assert health_log.wait_for("camera_found")["down_ms"] >= 400
    assert burst.wait(5.0) and len(burst.later) == 1
    assert monitor.state == "ok"
    assert health_log.kinds == ["camera_lost", "camera_found"]


def test_blind_is_reported_when_its_frame_cannot_be_a_snapshot(monitor_factory, health_log):
    camera = ScriptedCamera()
    monitor = monitor_factory(camera, lost_after_s=30.0)
    burst = monitor.snapshots_around(time.monotonic(), before_s=0.0, after_s=10.0, max_frames=1)

    # Dark frames too wide for JPEG (over 65,500 pixels): each is blind, and each fails as the burst's snapshot.
    camera.put(*[np.zeros((1, 70_000, 3), np.uint8)] * 20)

    assert health_log.wait_for("camera_blind")["reason"] == "uniform"
    assert monitor.state == "blind"
    assert burst.later == [] and not burst.done
    camera.put(*static_frames(20))
    health_log.wait_for("camera_recovered")
    assert burst.wait(5.0) and len(burst.later) == 1


@pytest.mark.parametrize(
    "bad",
    [
        np.full((240, 320, 2), 128, np.uint8),  # a driver left in raw YUYV: two channels, not BGR
        np.zeros((0, 0, 3), np.uint8),  # an empty image: no spread to judge, not a good frame
    ],
    ids=["raw_yuyv", "empty"],
)
def test_frames_that_cannot_be_analysed_are_failed_reads(monitor_factory, health_log, bad):
    camera = ScriptedCamera()
    monitor = monitor_factory(camera)
    camera.put(*[bad] * 16)

    assert health_log.wait_for("camera_lost")["reason"] == "bad_frame"
    assert monitor.state == "lost" and monitor.observations > 0
    camera.put(*static_frames(20))
    health_log.wait_for("camera_found")
    assert monitor.wait_for_state("ok", timeout=30.0)


def test_health_tracker_transitions_on_a_fake_clock():
    tracker = HealthTracker(blind_after_s=5.0, lost_after_s=3.0, recover_frames=2)
    tracker.start(0.0)

    assert tracker.frame(1.0, None) == [] and tracker.state == "ok"
    assert tracker.frame(2.0, "uniform") == [] and tracker.state == "uniform"  # said at once: never "ok" on it
    assert [e.kind for e in tracker.frame(7.0, "uniform")] == ["camera_blind"] and tracker.state == "blind"
    assert tracker.frame(8.0, None) == [] and tracker.state == "blind"  # one good frame is not enough
    recovered = tracker.frame(9.0, None)
    assert [(e.kind, e.details) for e in recovered] == [("camera_recovered", {"down_ms": 7000})]
    assert tracker.failure(10.0, "read_failed") == []
    lost = tracker.failure(13.0, "read_failed")
    assert [(e.kind, e.details) for e in lost] == [("camera_lost", {"reason": "read_failed", "after_ms": 3000})]
    assert tracker.failure(20.0, "read_failed") == []  # reported once
    # Found: its first frame is dark, not "ok"; it is judged from the frames again.
    assert [e.kind for e in tracker.frame(21.0, "uniform")] == ["camera_found"] and tracker.state == "uniform"
    assert tracker.frame(22.0, None) == [] and tracker.state == "ok"


def test_health_tracker_says_frozen_or_uniform_at_once_and_blind_after_blind_after_s():
    """A frame that shows nothing new is never signed "ok": the state is its reason until ``blind_after_s`` makes it
    "blind"."""
    tracker = HealthTracker(blind_after_s=5.0, lost_after_s=3.0, recover_frames=2)
    tracker.start(0.0)
    assert tracker.frame(1.0, None) == [] and tracker.state == "ok"
    assert tracker.frame(2.0, "frozen") == [] and tracker.state == "frozen"
    assert tracker.frame(3.0, "uniform") == [] and tracker.state == "uniform"  # the newest frame's reason
    assert tracker.frame(4.0, "frozen") == [] and tracker.state == "frozen"
    assert tracker.frame(5.0, None) == [] and tracker.state == "ok"  # no camera_blind was reported: nothing to end
    tracker.frame(6.0, "frozen")
    blind = tracker.frame(11.0, "frozen")
    assert [(e.kind, e.details) for e in blind] == [("camera_blind", {"reason": "frozen", "after_ms": 5000})]
    assert tracker.state == "blind"
    assert tracker.frame(12.0, "uniform") == [] and tracker.state == "blind"


def test_health_tracker_a_blind_camera_lost_and_found_with_a_good_image_is_recovered_once():
    """camera_blind opens an alarm at the court that only camera_recovered closes: a loss in between must not swallow
    it."""
    tracker = HealthTracker(blind_after_s=5.0, lost_after_s=3.0, recover_frames=2)
    tracker.start(0.0)
    tracker.frame(1.0, "uniform")
    assert [e.kind for e in tracker.frame(6.0, "uniform")] == ["camera_blind"]
    assert tracker.failure(7.0, "read_failed") == []  # unplugged
    assert [e.kind for e in tracker.failure(10.0, "read_failed")] == ["camera_lost"]
    found = tracker.frame(20.0, None)  # plugged in again, the lens uncovered
    assert [e.kind for e in found] == ["camera_found"] and tracker.state == "starting"  # blind until shown otherwise
    recovered = tracker.frame(21.0, None)
    assert [(e.kind, e.details) for e in recovered] == [("camera_recovered", {"down_ms": 20000})]  # blind since 1.0
    assert tracker.state == "ok"
    assert tracker.frame(22.0, None) == [] and tracker.failure(23.0, "read_failed") == []  # once


def test_health_tracker_a_lens_still_covered_after_found_is_never_ok_and_blind_again_without_a_second_report():
    tracker = HealthTracker(blind_after_s=5.0, lost_after_s=3.0, recover_frames=2)
    tracker.start(0.0)
    tracker.frame(1.0, "uniform")
    assert [e.kind for e in tracker.frame(6.0, "uniform")] == ["camera_blind"]
    tracker.failure(7.0, "read_failed")
    assert [e.kind for e in tracker.failure(10.0, "read_failed")] == ["camera_lost"]
    assert [e.kind for e in tracker.frame(12.0, "uniform")] == ["camera_found"]
    states = []
    for t in range(13, 18):  # still covered
        assert tracker.frame(float(t), "uniform") == []  # the camera_blind of 6.0 is still open: not reported again
        states.append(tracker.state)
    assert states == ["uniform"] * 4 + ["blind"]  # blind again after blind_after_s, never "ok" meanwhile
    assert tracker.frame(18.0, None) == [] and tracker.state == "blind"
    assert [(e.kind, e.details) for e in tracker.frame(19.0, None)] == [("camera_recovered", {"down_ms": 18000})]
    assert tracker.state == "ok"


def test_health_tracker_a_good_frame_too_few_to_end_an_open_blind_condition_is_starting():
    tracker = HealthTracker(blind_after_s=5.0, lost_after_s=3.0, recover_frames=2)
    tracker.start(0.0)
    tracker.frame(1.0, "uniform")
    assert [e.kind for e in tracker.frame(6.0, "uniform")] == ["camera_blind"]
    tracker.failure(7.0, "read_failed")
    assert [e.kind for e in tracker.failure(10.0, "read_failed")] == ["camera_lost"]
    assert [e.kind for e in tracker.frame(12.0, "uniform")] == ["camera_found"] and tracker.state == "uniform"
    assert tracker.frame(13.0, None) == [] and tracker.state == "starting"  # not "uniform" now, not yet "ok"
    assert [e.kind for e in tracker.frame(14.0, None)] == ["camera_recovered"] and tracker.state == "ok"


def test_blind_reason():
    scene = textured_scene()
    noisy = next(static_frames(1))

    assert blind_reason(np.zeros_like(scene), None, 8.0) == "uniform"
    assert blind_reason(np.full_like(scene, 200), None, 8.0) == "uniform"
    assert blind_reason(scene, scene.copy(), 8.0) == "frozen"
    assert blind_reason(noisy, scene, 8.0) is None
    assert repeats(np.zeros_like(scene), np.zeros_like(scene)) and not repeats(noisy, scene)
    assert not repeats(scene, None) and not repeats(scene, scene[:, :-1])
