"""Frames a camera should not send: one JPEG cannot encode costs only itself (every burst takes the next good frame),
and frames that cannot be analysed are logged once, then counted, not one line per frame."""

from __future__ import annotations

import logging
import re
import time

import cv2
import numpy as np
import pytest

from seal_agent.devices.camera import CameraMonitor
from seal_agent.devices.camera.throttle import ThrottledWarning
from tests.agent_camera.clips import HEIGHT, WIDTH, static_frames
from tests.agent_camera.drivers import ScriptedCamera

MONITOR_LOGGER = "seal_agent.devices.camera.monitor"
#: Too wide for JPEG (over 65,500 pixels), yet a good frame to analyse: sensor noise, not blind.
WIDE = np.random.default_rng(7).integers(0, 256, (1, 70_000, 3), dtype=np.uint8)


def wide_frames(count: int) -> list[np.ndarray]:
    """``count`` frames like :data:`WIDE`, each its own (a repeated frame is no new view: never a snapshot)."""
    return [np.random.default_rng(100 + i).integers(0, 256, WIDE.shape, dtype=np.uint8) for i in range(count)]


#: A driver left in raw YUYV: two channels, not BGR; it cannot even be analysed.
YUYV = np.full((HEIGHT, WIDTH, 2), 128, np.uint8)


def decodes(jpeg: bytes) -> bool:
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    return image is not None and image.shape == (HEIGHT, WIDTH, 3)


def counted(messages: list[str]) -> int:
    """Occurrences the log lines stand for: 1 for a plain line, N for a "(N times in the last ...)" summary."""
    return sum(int(m.group(1)) if (m := re.search(r"\((\d+) times in the last", text)) else 1 for text in messages)


def lines(caplog: pytest.LogCaptureFixture, start: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == MONITOR_LOGGER and r.getMessage().startswith(start)]


def test_an_unencodable_frame_in_the_ring_gives_way_to_the_frame_before_it(monitor_factory):
    camera = ScriptedCamera()
    monitor = monitor_factory(camera, lost_after_s=30.0)
    camera.pace(monitor)
    camera.put(*static_frames(6), WIDE)  # the newest frame in the ring is one JPEG cannot take
    assert monitor.wait_for_observations(camera.wait_given(7), 30.0)

    burst = monitor.snapshots_around(time.monotonic(), before_s=30.0, after_s=0.0, max_frames=2)

    assert len(burst.ready) == 2 and all(decodes(s.jpeg) for s in burst.ready)  # the oldest, and the newest good one
    latest = monitor.latest_snapshot()
    assert latest is not None and decodes(latest.jpeg) and latest.t == burst.ready[-1].t


def test_an_unencodable_frame_after_the_trigger_gives_its_place_to_a_later_one(monitor_factory):
    camera = ScriptedCamera()
    monitor = monitor_factory(camera, lost_after_s=30.0)
    camera.pace(monitor)
    trigger = time.monotonic()
    camera.put(WIDE)
    assert monitor.wait_for_observations(camera.wait_given(1), 30.0)

    burst = monitor.snapshots_around(trigger, before_s=0.0, after_s=30.0, max_frames=2)  # the wide frame is in reach
    assert burst.ready == [] and not burst.done
    camera.put(*static_frames(5))

    assert burst.wait(5.0) and len(burst.later) == 2 and all(decodes(s.jpeg) for s in burst.later)


def test_waiting_bursts_skip_an_unencodable_frame_and_one_whose_window_has_none_ends_empty(monitor_factory, caplog):
    caplog.set_level(logging.WARNING, logger=MONITOR_LOGGER)
    camera = ScriptedCamera()
    monitor = monitor_factory(camera, lost_after_s=30.0, bad_frame_log_interval_s=3600.0)
    camera.pace(monitor)
    trigger = time.monotonic()
    short = monitor.snapshots_around(trigger, before_s=0.0, after_s=0.3, max_frames=1)
    long = monitor.snapshots_around(trigger, before_s=0.0, after_s=30.0, max_frames=2)

    camera.put(*wide_frames(30), *static_frames(10))  # 30 wide frames take 1.5 s at 20 fps: all of the short window

    assert short.wait(5.0) and short.snapshots == []  # its window had no picture, and it says so
    assert long.wait(5.0) and len(long.later) == 2 and all(decodes(s.jpeg) for s in long.later)
    monitor.stop(timeout=2.0)
    assert lines(caplog, "camera monitor failed") == []
    unencodable = lines(caplog, "no snapshot of a camera frame")
    assert len(unencodable) == 2 and counted(unencodable) == 30  # the first at once, the rest counted at the stop


def test_bad_frames_log_the_first_then_one_count_per_interval(health_log, caplog):
    caplog.set_level(logging.WARNING, logger=MONITOR_LOGGER)
    camera = ScriptedCamera()
    camera.put(*[YUYV] * 200)
    monitor = CameraMonitor(camera, on_health=health_log, fps=200.0, lost_after_s=0.4, bad_frame_log_interval_s=3600)
    camera.pace(monitor)
    monitor.start()
    try:
        assert monitor.wait_for_observations(camera.wait_given(200), 30.0)
        assert health_log.wait_for("camera_lost")["reason"] == "bad_frame"
        assert len(lines(caplog, "camera frame")) == 1  # 200 bad frames, one line so far
        camera.put(*static_frames(10))
        health_log.wait_for("camera_found")
    finally:
        monitor.stop(timeout=2.0)

    bad = lines(caplog, "camera frame")
    assert len(bad) == 2 and counted(bad) == 200  # the rest counted at the stop, none lost
    assert "(199 times in the last" in bad[1] and "cannot be analysed" in bad[1]
    assert health_log.kinds == ["camera_lost", "camera_found"]


def test_throttled_warning_counts_exactly_on_a_fake_clock(caplog):
    caplog.set_level(logging.WARNING, logger="tests.throttle")
    now = [0.0]
    warning = ThrottledWarning(logging.getLogger("tests.throttle"), "frame %s is bad", 60.0, lambda: now[0])

    for second in range(100):  # one a second
        now[0] = float(second)
        warning.note(second)
        warning.tick()
    now[0] = 130.0
    warning.tick()  # the 39 held back since t=60, though no new one came
    now[0] = 131.0
    warning.tick()
    now[0] = 300.0
    warning.note(300)  # a lone one after a quiet interval
    warning.flush()

    assert [r.getMessage() for r in caplog.records] == [
        "frame 0 is bad",
        "frame 60 is bad (60 times in the last 60.0 s; the newest shown)",
        "frame 99 is bad (39 times in the last 70.0 s; the newest shown)",
        "frame 300 is bad",
    ]
    assert warning.total == 101 == counted([r.getMessage() for r in caplog.records])
