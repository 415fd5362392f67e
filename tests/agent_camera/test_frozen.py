"""A frozen camera (the same frame again, bit for bit: a hung driver, a paused source) shows no new view: the state
says so at once, its picture is taken once, as old as the first of the run, and never as the view now."""

from __future__ import annotations

import hashlib
import time

from tests.agent_camera.clips import static_frames
from tests.agent_camera.drivers import ScriptedCamera

LIVE = 10


def test_a_frozen_frame_is_one_picture_as_old_as_the_first_of_its_run(monitor_factory, health_log):
    camera = ScriptedCamera()
    monitor = monitor_factory(camera, ring_seconds=30.0, blind_after_s=60.0, lost_after_s=60.0)
    camera.pace(monitor)
    live = list(static_frames(LIVE + 1))
    frozen = live.pop()
    camera.put(*live, *[frozen.copy() for _ in range(6)])
    assert monitor.wait_for_observations(camera.wait_given(LIVE + 6), 30.0)

    assert monitor.state == "frozen"  # frames arrive, none of them new: never "ok", not yet blind
    burst = monitor.snapshots_around(time.monotonic(), before_s=30.0, after_s=0.0, max_frames=50)
    hashes = [hashlib.sha256(snapshot.jpeg).hexdigest() for snapshot in burst.ready]
    assert len(hashes) == LIVE + 1 and len(set(hashes)) == LIVE + 1  # every picture once, the frozen one too
    latest = monitor.latest_snapshot()  # the frozen picture is as old as its first frame: current only so long
    assert latest is None or (latest.t == burst.ready[-1].t and latest.jpeg == burst.ready[-1].jpeg)
    assert monitor.motion_verdict(burst.ready[-1].t + 1e-6, time.monotonic()) == "unknown"  # no new view: no motion
    assert health_log.kinds == []

    camera.put(*static_frames(2, seed=5))  # live again
    assert monitor.wait_for_state("ok", 30.0)
