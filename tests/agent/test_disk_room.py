"""Snapshots never take the room the outbox needs, on a real small filesystem (a 1 MiB tmpfs mounted by the test):
the quota in force is at most what the disk holds besides the outbox; a full disk (filled by something else) thins
snapshots, receipted ones first and on record, and the events it held are committed; a post-trigger snapshot that
cannot be stored is named in its trigger's ``not_stored``."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from seal_agent.devices.camera import Snapshot, SnapshotBurst
from seal_agent.devices.evidence import Evidence
from seal_agent.journal.outbox import Outbox
from seal_agent.journal.snapshot_spool import SnapshotSpool
from seal_agent.journal.snapshot_store import SnapshotStore
from seal_protocol import EventType
from tests.agent.spool_helpers import jpeg_of, recorder_on, thinnings

DEFAULT_QUOTA = 200 * 1024 * 1024  # the configuration's default: far more than the disk


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 1 MiB filesystem (tmpfs), unmounted afterwards whatever happened."""
    if os.geteuid() != 0:
        pytest.skip("mounting a 1 MiB tmpfs needs root (CI runs these as root)")
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)


def _fill(directory: Path) -> None:
    """Something else (the system's logs) takes every free byte of the disk."""
    fd = os.open(directory / "filler", os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(fd, b"x" * 4096)
    except OSError:
        pass
    finally:
        os.close(fd)


def test_snapshots_under_a_quota_larger_than_the_disk_never_refuse_the_events(small_disk: Path) -> None:
    outbox = Outbox(small_disk / "state" / "outbox.db")
    try:
        recorder = recorder_on(outbox)
        spool = SnapshotSpool(SnapshotStore(small_disk / "state" / "snapshots", DEFAULT_QUOTA), recorder)
        assert spool.quota_bytes < 1024 * 1024  # the quota in force is what the disk can hold besides the outbox
        for n in range(30):  # the old agent filled this disk with 25
            spool.add(jpeg_of(n, side=160))
        turns = [recorder.record_in_line(EventType.INTRUSION, {"i": i}) for i in range(5)]
        assert recorder.held == 0
        assert all(turn.settled for turn in turns)
        assert all(report["quota_bytes"] == spool.quota_bytes for report in thinnings(outbox))
    finally:
        outbox.close()


def test_a_disk_filled_by_something_else_thins_the_receipted_snapshots_and_commits_the_events(
    small_disk: Path,
) -> None:
    state = small_disk / "state"
    outbox = Outbox(state / "outbox.db")
    try:
        recorder = recorder_on(outbox)
        store = SnapshotStore(state / "snapshots", DEFAULT_QUOTA)
        spool = SnapshotSpool(store, recorder)
        for n in range(12):
            spool.add(jpeg_of(n, side=160))
        items = spool.pending(after=0, limit=1000)
        spool.broker_acknowledged([item.key for item in items])
        spool.court_receipted([item.sha for item in items])
        receipted = set(outbox.receipted_snapshots())
        assert len(receipted) == 12 and store.total_bytes() > 100_000
        before = len(thinnings(outbox))
        _fill(small_disk)

        turns = [recorder.record_in_line(EventType.INTRUSION, {"i": i}) for i in range(5)]

        assert recorder.held == 0, "intrusions held in memory only while receipted snapshots stay on the disk"
        assert all(turn.settled for turn in turns)
        reports = thinnings(outbox)[before:]
        assert reports and all(report["cause"] == "disk_full" for report in reports)
        thinned = {sha for report in reports for sha in report["snapshots"]}
        assert thinned and thinned <= receipted  # the court holds them: nothing it lacks was thinned
        assert all(report["unsent_lost"] == [] for report in reports)
        assert not thinned & set(store.hashes())  # what the seal signed it thinned is gone
    finally:
        outbox.close()


def test_a_post_trigger_snapshot_the_full_disk_refuses_is_named_not_stored(small_disk: Path) -> None:
    outbox = Outbox(small_disk / "outbox.db")
    try:
        spool = SnapshotSpool(SnapshotStore(small_disk / "snapshots", DEFAULT_QUOTA), recorder_on(outbox))
        _fill(small_disk)
        evidence = Evidence(spool)
        burst = SnapshotBurst(0.0, [], deadline=5.0, max_later=2, on_snapshot=evidence.on_later)
        evidence.attach(burst)
        jpegs = [jpeg_of(100 + i, side=200) for i in range(2)]
        for i, jpeg in enumerate(jpegs):
            burst.add(Snapshot(t=1.0 + i, offset_s=1.0 + i, jpeg=jpeg))

        assert evidence.wait_later() == []
        named = evidence.later_not_stored()
        assert [item["sha256"] for item in named] == [SnapshotStore.address(jpeg) for jpeg in jpegs]
        assert all(item["reason"].startswith("ENOSPC") for item in named), named
    finally:
        outbox.close()
