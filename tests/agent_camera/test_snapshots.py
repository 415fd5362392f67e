"""Snapshots around a trigger (ring buffer + post-trigger frames) and the content-addressed, quota-bound store."""

from __future__ import annotations

import hashlib
import itertools
import os
import threading
import time

import cv2
import numpy as np
import pytest

from seal_agent.devices.camera import Snapshot, VideoFileCamera, encode_jpeg
from seal_agent.errors import InvalidSnapshotHash, SnapshotNotFound
from seal_agent.journal.snapshot_store import SnapshotStore
from tests.agent_camera.clips import HEIGHT, WIDTH, moving_rectangle_frames, textured_scene


def decodes(jpeg: bytes) -> bool:
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    return image is not None and image.shape == (HEIGHT, WIDTH, 3)


def test_snapshots_before_at_once_and_after_by_callback(clip, monitor_factory, tmp_path):
    monitor = monitor_factory(VideoFileCamera(clip("walker", moving_rectangle_frames(40))), ring_seconds=1.0)
    assert monitor.wait_for_state("ok", timeout=30.0)
    warm = time.monotonic()
    monitor.motion_verdict(warm, warm + 0.5, timeout=30.0)  # the ring now holds ~0.5 s of frames
    arrived: list[Snapshot] = []
    arrived_lock = threading.Lock()

    def on_snapshot(snapshot: Snapshot) -> None:
        with arrived_lock:
            arrived.append(snapshot)

    trigger = time.monotonic()
    burst = monitor.snapshots_around(trigger, before_s=1.0, after_s=2.0, max_frames=6, on_snapshot=on_snapshot)

    assert 1 <= len(burst.ready) <= 3  # at most half of max_frames come from before the trigger
    assert all(s.offset_s <= 0 for s in burst.ready) and all(decodes(s.jpeg) for s in burst.ready)
    assert burst.wait(timeout=30.0)
    assert 1 <= len(burst.later) <= 6 - len(burst.ready)
    assert all(0 < s.offset_s <= 2.0 for s in burst.later) and all(decodes(s.jpeg) for s in burst.later)
    with arrived_lock:
        assert arrived == burst.later
    times = [s.t for s in burst.snapshots]
    assert times == sorted(times)

    store = SnapshotStore(tmp_path / "snapshots", quota_bytes=10_000_000)
    for snapshot in burst.snapshots:
        sha = store.put(snapshot.jpeg)
        path = store.path(sha)
        assert path == tmp_path / "snapshots" / sha[:2] / f"{sha}.jpg"
        assert hashlib.sha256(path.read_bytes()).hexdigest() == sha
        assert store.get(sha) == snapshot.jpeg


def test_burst_when_the_camera_is_lost_has_nothing_and_ends_at_its_deadline(tmp_path, monitor_factory, health_log):
    monitor = monitor_factory(VideoFileCamera(tmp_path / "missing.avi"))
    health_log.wait_for("camera_lost")

    burst = monitor.snapshots_around(time.monotonic(), before_s=1.0, after_s=0.2, max_frames=4)

    assert burst.ready == []
    assert burst.wait(timeout=30.0)
    assert burst.later == []
    assert monitor.latest_snapshot() is None


def test_latest_snapshot_is_a_jpeg(clip, monitor_factory):
    monitor = monitor_factory(VideoFileCamera(clip("walker", moving_rectangle_frames(20))))
    assert monitor.wait_for_state("ok", timeout=30.0)

    snapshot = monitor.latest_snapshot()

    assert snapshot is not None and snapshot.offset_s == 0 and decodes(snapshot.jpeg)


class LargeSensorCamera:
    """A live camera with a large sensor: analysing each frame takes the monitor a few milliseconds."""

    def __init__(self, width: int = 1920, height: int = 1440) -> None:
        scene = np.asarray(cv2.resize(textured_scene(), (width, height)), dtype=np.uint8)
        self._frames = itertools.cycle([scene, scene ^ 1])  # sensor noise: never two alike in a row

    def read(self) -> np.ndarray:
        return next(self._frames)

    def close(self) -> None:
        pass


def test_whoever_sees_ok_can_take_a_snapshot(monitor_factory):
    # The state is polled, not waited on: at whatever moment "ok" shows, the frame that made it so is in the ring.
    for _ in range(3):
        monitor = monitor_factory(LargeSensorCamera())
        deadline = time.monotonic() + 30.0
        while monitor.state != "ok":
            assert time.monotonic() < deadline, f"still {monitor.state} after 30 s"
            time.sleep(0)  # lets the monitor thread take the GIL back at once

        assert monitor.latest_snapshot() is not None
        monitor.stop(timeout=2.0)


def jpeg_of(seed: int, size: int = 64) -> bytes:
    rng = np.random.default_rng(seed)
    return encode_jpeg(rng.integers(0, 255, (size, size, 3), dtype=np.uint8), quality=90)


def test_put_is_content_addressed_and_idempotent(tmp_path):
    store = SnapshotStore(tmp_path, quota_bytes=1_000_000)
    data = jpeg_of(1)

    sha = store.put(data)
    mtime = store.path(sha).stat().st_mtime_ns
    assert store.put(data) == sha == hashlib.sha256(data).hexdigest()
    assert store.path(sha).stat().st_mtime_ns == mtime
    assert store.hashes() == [sha] and sha in store
    assert store.total_bytes() == len(data)
    assert [p.name for p in tmp_path.rglob("*") if p.is_file()] == [f"{sha}.jpg"]  # no temporary files left
    assert store.delete(sha) and not store.delete(sha)
    assert sha not in store and store.total_bytes() == 0


def test_store_errors(tmp_path):
    store = SnapshotStore(tmp_path, quota_bytes=1000)

    with pytest.raises(SnapshotNotFound):
        store.get("0" * 64)
    with pytest.raises(KeyError):
        store.get("0" * 64)
    with pytest.raises(InvalidSnapshotHash):
        store.get("../../etc/passwd")
    with pytest.raises(ValueError):
        store.delete("ABC")
    with pytest.raises(ValueError, match="JPEG"):
        store.put(b"not a picture")


def test_thinning_removes_oldest_first_and_spares_protected(tmp_path):
    store = SnapshotStore(tmp_path, quota_bytes=1)
    hashes = [store.put(jpeg_of(seed)) for seed in range(6)]  # written within a few ms: order must still hold
    sizes = {sha: store.path(sha).stat().st_size for sha in hashes}
    assert store.hashes() == hashes
    store.quota_bytes = sizes[hashes[0]] + sizes[hashes[4]] + sizes[hashes[5]]  # room for exactly three
    protected = {hashes[0]}

    removed = store.thin_to_quota(protected)

    assert removed == hashes[1:4]
    assert store.hashes() == [hashes[0], hashes[4], hashes[5]]
    assert store.total_bytes() == store.quota_bytes
    assert store.thin_to_quota(protected) == []  # idempotent once under quota


def test_thinning_never_deletes_protected_even_over_quota(tmp_path):
    store = SnapshotStore(tmp_path, quota_bytes=1)
    hashes = [store.put(jpeg_of(seed)) for seed in range(3)]

    removed = store.thin_to_quota(set(hashes[:2]))

    assert removed == [hashes[2]]
    assert store.hashes() == hashes[:2]
    assert store.total_bytes() > store.quota_bytes


def test_new_snapshots_are_newer_even_if_the_clock_is_behind(tmp_path):
    store = SnapshotStore(tmp_path, quota_bytes=1)
    old = store.put(jpeg_of(1))
    future = time.time_ns() + 3600 * 10**9  # written while the clock was an hour ahead
    os.utime(store.path(old), ns=(future, future))

    reopened = SnapshotStore(tmp_path, quota_bytes=1)
    new = reopened.put(jpeg_of(2))

    assert reopened.hashes() == [old, new]
    reopened.quota_bytes = reopened.path(new).stat().st_size
    assert reopened.thin_to_quota(set()) == [old]


def test_write_says_whether_it_created_the_file(tmp_path):
    store = SnapshotStore(tmp_path, quota_bytes=1_000_000)
    data = jpeg_of(5)
    assert store.write(data) == (hashlib.sha256(data).hexdigest(), True)
    assert store.write(data) == (hashlib.sha256(data).hexdigest(), False)
