"""Snapshots queued by an earlier run are delivered, and counted in every heartbeat, by a seal whose camera is no
longer configured (unplugged, broken by the intruder): a real runtime, a private Mosquitto, a receipting court."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from seal_agent.config import load_config
from seal_agent.journal.outbox import Outbox
from seal_agent.journal.snapshot_store import SnapshotStore
from seal_dev.broker import PrivateBroker
from seal_protocol import decode_envelope
from tests.agent.helpers import CourtSubscriber, RuntimeFactory, write_config
from tests.agent.spool_helpers import jpeg_of

DEVICE = "seal-test-1"


def test_pictures_queued_before_the_camera_went_are_still_delivered_and_counted(
    tmp_path: Path,
    broker: PrivateBroker,
    court: CourtSubscriber,
    runtimes: RuntimeFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    config_path = write_config(tmp_path, broker)  # no [camera] section
    config = load_config(config_path)
    config.state_dir.mkdir(mode=0o700, parents=True)
    with Outbox(config.outbox_path) as outbox:  # what the run with the camera left: queued, never receipted
        store = SnapshotStore(config.snapshot_dir, config.camera.snapshot_quota_bytes)
        queued = [store.put(jpeg_of(seed)) for seed in range(3)]
        for sha in queued:
            outbox.queue_snapshot(sha)
    with caplog.at_level(logging.WARNING):
        runtime = runtimes(config_path)
    assert runtime.camera is None
    assert "3 snapshot(s) queued before are still delivered" in caplog.text
    before = decode_envelope(runtime.agent.heartbeat().data).payload
    assert (before["camera"], before["snapshots_pending"]) == ("none", 3)  # signed, and true

    runtime.start()
    assert court.wait_for(lambda c: c.snapshot_hashes(DEVICE) == set(queued), timeout=30)
    assert runtime.delivery.snapshots is not None and runtime.delivery.snapshots.wait_drained(30)
    assert runtime.outbox.snapshot_depth() == 0
    after = decode_envelope(runtime.agent.heartbeat().data).payload
    assert after["snapshots_pending"] == 0
