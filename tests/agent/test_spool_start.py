"""A snapshot spool built while its outbox refuses writes (a full disk; here another connection holds the write lock,
the technique of tests/agent/test_start_state.py) keeps the camera: the writes it owes are made with the next
snapshot, and only a store that cannot be used at all leaves the seal without pictures."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from seal_agent.config import load_config
from seal_agent.journal.snapshot_store import SnapshotStore
from seal_dev.broker import PrivateBroker
from tests.agent.helpers import RuntimeFactory, write_config
from tests.agent.spool_helpers import jpeg_of
from tests.agent_camera.clips import moving_rectangle_frames, write_clip


def test_a_write_refused_at_the_spools_start_keeps_the_camera_and_is_made_with_the_next_snapshot(
    tmp_path: Path, broker: PrivateBroker, runtimes: RuntimeFactory
) -> None:
    video = write_clip(tmp_path / "walk.avi", moving_rectangle_frames(50))
    config_path = write_config(tmp_path, broker, camera=f'[camera]\nsource = "{video}"\nfps = 10.0')
    config = load_config(config_path)
    runtimes(config_path).close()  # the first start made the outbox, the key and the chain
    # killed between storing a snapshot and queueing it:
    stored = SnapshotStore(config.snapshot_dir, config.camera.snapshot_quota_bytes).put(jpeg_of(1))
    blocker = sqlite3.connect(config.outbox_path, isolation_level=None, timeout=0)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        runtime = runtimes(config_path)
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert runtime.spool is not None and runtime.camera is not None
    assert runtime.outbox.snapshot_depth() == 0  # nothing could be queued at start
    newest = runtime.spool.add(jpeg_of(2))
    assert runtime.outbox.queued_snapshots() == {stored, newest}
