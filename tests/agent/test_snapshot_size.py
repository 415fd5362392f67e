"""Snapshots and the broker's size limit (``seal_protocol.topics.MAX_SNAPSHOT_BYTES``): a frame is re-encoded to fit,
a snapshot over the limit is never queued, and one an older agent queued is dropped from the queue instead of being
sent (the broker would close the connection on it, at every reconnect)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from seal_agent.devices.camera import encode_jpeg
from seal_agent.devices.camera.motion import encode_jpeg_within
from seal_agent.errors import SnapshotTooLarge
from seal_agent.journal.outbox import Outbox
from seal_agent.journal.snapshot_losses import OVERSIZED_DIR
from seal_agent.journal.snapshot_spool import SnapshotSpool
from seal_agent.journal.snapshot_store import SnapshotStore
from seal_protocol.topics import MAX_SNAPSHOT_BYTES
from tests.agent.spool_helpers import recorder_on


def noise(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (height, width, 3), dtype=np.uint8)


@pytest.fixture
def outbox(tmp_path: Path) -> Iterator[Outbox]:
    with Outbox(tmp_path / "outbox.db") as box:
        yield box


def test_a_frame_that_fits_is_encoded_at_its_quality() -> None:
    image = noise(64, 64)
    assert encode_jpeg_within(image, 90, 10_000_000) == encode_jpeg(image, 90)


def test_a_frame_over_the_limit_is_re_encoded_at_a_lower_quality_then_smaller() -> None:
    image = noise(128, 160)
    full = len(encode_jpeg(image, 95))
    at_lower_quality = encode_jpeg_within(image, 95, full - 1)
    assert at_lower_quality is not None and len(at_lower_quality) < full
    decoded = cv2.imdecode(np.frombuffer(at_lower_quality, np.uint8), cv2.IMREAD_COLOR)
    assert decoded.shape == image.shape  # the quality was enough
    smallest_full_size = len(encode_jpeg(image, 20))
    smaller = encode_jpeg_within(image, 95, smallest_full_size - 1)
    assert smaller is not None and len(smaller) < smallest_full_size
    decoded = cv2.imdecode(np.frombuffer(smaller, np.uint8), cv2.IMREAD_COLOR)
    assert decoded.shape[0] < image.shape[0] and decoded.shape[1] < image.shape[1]


def test_a_frame_that_cannot_fit_gives_no_snapshot(caplog: pytest.LogCaptureFixture) -> None:
    assert encode_jpeg_within(noise(64, 64), 80, 100) is None
    assert "no snapshot" in caplog.text


def test_a_snapshot_over_the_limit_is_neither_stored_nor_queued(tmp_path: Path, outbox: Outbox) -> None:
    store = SnapshotStore(tmp_path / "snapshots", quota_bytes=100 * 2**20)
    spool = SnapshotSpool(store, recorder_on(outbox))
    with pytest.raises(SnapshotTooLarge):
        spool.add(b"\xff\xd8" + bytes(MAX_SNAPSHOT_BYTES))
    assert store.hashes() == [] and spool.depth() == 0
    at_limit = b"\xff\xd8" + bytes(MAX_SNAPSHOT_BYTES - 2)
    assert spool.add(at_limit) in store and spool.depth() == 1


def test_an_oversized_snapshot_already_queued_is_dropped_and_set_aside(
    tmp_path: Path, outbox: Outbox, caplog: pytest.LogCaptureFixture
) -> None:
    store = SnapshotStore(tmp_path / "snapshots", quota_bytes=100 * 2**20)
    spool = SnapshotSpool(store, recorder_on(outbox))
    big = store.put(b"\xff\xd8" + bytes(MAX_SNAPSHOT_BYTES + 1000))  # as an agent without the limit stored it
    outbox.queue_snapshot(big)
    small = spool.add(encode_jpeg(noise(32, 32)))
    assert [item.sha for item in spool.pending(after=0, limit=10)] == [small]
    assert "over the 8388608-byte limit" in caplog.text
    assert outbox.queued_snapshots() == {small} and big not in store
    assert (store.directory / OVERSIZED_DIR / f"{big}.jpg").is_file()  # the local copy is kept
    SnapshotSpool(store, recorder_on(outbox))  # the next start does not queue it again
    assert outbox.queued_snapshots() == {small}
