"""Motion seen (or not) in a time window, from generated clips played through the real monitor."""

from __future__ import annotations

import time

from seal_agent.devices.camera import MotionDetector, MotionVerdict, VideoFileCamera
from tests.agent_camera.clips import moving_rectangle_frames, static_frames


def test_moving_rectangle_is_motion_in_the_window(clip, monitor_factory):
    camera = VideoFileCamera(clip("walker", moving_rectangle_frames(40)))
    monitor = monitor_factory(camera)
    assert monitor.wait_for_observations(6, 30)  # after the 5 learning frames, however long they took to come
    start = time.monotonic()

    window = (start, start + 1.0)
    assert monitor.motion_verdict(*window, timeout=30.0) is MotionVerdict.SEEN
    assert monitor.motion_between(*window)
    assert monitor.state == "ok"


def test_static_scene_is_no_motion(clip, monitor_factory):
    camera = VideoFileCamera(clip("room", static_frames(40)))
    monitor = monitor_factory(camera)
    assert monitor.wait_for_observations(6, 30)  # after the 5 learning frames
    start = time.monotonic()

    window = (start, start + 1.0)
    assert monitor.motion_verdict(*window, timeout=30.0) is MotionVerdict.NOT_SEEN
    assert not monitor.motion_between(*window)
    assert monitor.state == "ok"


def test_window_before_any_frame_is_unknown(clip, monitor_factory):
    camera = VideoFileCamera(clip("walker", moving_rectangle_frames(20)))
    monitor = monitor_factory(camera)
    long_ago = time.monotonic() - 100.0

    assert monitor.motion_verdict(long_ago, long_ago + 1.0) is MotionVerdict.UNKNOWN
    assert not monitor.motion_between(long_ago, long_ago + 1.0)


def test_learning_frames_give_no_verdict_then_motion_is_seen():
    frames = list(moving_rectangle_frames(8))
    detector = MotionDetector(min_area=0.005, learning_frames=3)

    verdicts = [detector.feed(frame) for frame in frames]

    assert verdicts[:3] == [None, None, None]
    assert all(verdict is True for verdict in verdicts[3:])


def test_small_blob_is_below_the_minimum_area():
    frames = list(static_frames(12))
    frames[-1][100:104, 100:104] = 0  # a 4x4 px speck: 0.02 % of the frame
    coarse = MotionDetector(min_area=0.005, learning_frames=5)
    fine = MotionDetector(min_area=0.0001, learning_frames=5)

    coarse_verdicts = [coarse.feed(frame) for frame in frames]
    fine_verdicts = [fine.feed(frame) for frame in frames]

    assert coarse_verdicts[5:] == [False] * 7
    assert fine_verdicts[5:] == [False] * 6 + [True]  # the speck is there, just below the coarse threshold
