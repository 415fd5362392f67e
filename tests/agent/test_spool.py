"""The snapshot spool on a real store and a real outbox: quota accounting of duplicates, and snapshots stored by a
process that died before queueing them. Thinnings are read back as the ``outbox_full`` events the outbox holds."""

from __future__ import annotations

import errno
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from seal_agent.devices.camera import encode_jpeg
from seal_agent.errors import OutboxError
from seal_agent.journal.outbox import Outbox
from seal_agent.journal.snapshot_spool import SnapshotSpool
from seal_agent.journal.snapshot_store import SnapshotStore
from tests.agent.spool_helpers import jpeg_of, recorder_on, thinnings
from tests.agent.test_outbox import V1_SCHEMA


@pytest.fixture
def outbox(tmp_path: Path) -> Iterator[Outbox]:
    with Outbox(tmp_path / "outbox.db") as box:
        yield box


def spool_on(store: SnapshotStore, outbox: Outbox) -> SnapshotSpool:
    return SnapshotSpool(store, recorder_on(outbox))


def send_all(spool: SnapshotSpool) -> None:
    """What the courier does once the court receipted every queued snapshot."""
    items = spool.pending(after=0, limit=1000)
    spool.broker_acknowledged([item.key for item in items])
    assert spool.court_receipted([item.sha for item in items]) == [item.key for item in items]


def test_storing_a_snapshot_again_does_not_count_toward_the_quota(tmp_path: Path, outbox: Outbox) -> None:
    jpegs = [jpeg_of(seed) for seed in range(9)]
    total = sum(len(jpeg) for jpeg in jpegs)
    # Under the quota, but above the 90 % that a thinning frees down to: one more byte counted twice would thin.
    store = SnapshotStore(tmp_path / "snapshots", quota_bytes=total + max(len(j) for j in jpegs) // 2)
    spool = spool_on(store, outbox)
    hashes = [spool.add(jpeg) for jpeg in jpegs]
    send_all(spool)
    assert spool.add(jpegs[-1]) == hashes[-1]  # the same frame in a second trigger's snapshots
    assert thinnings(outbox) == []
    assert store.hashes() == hashes and store.total_bytes() == total
    assert spool.depth() == 0  # and a frame the court already has is not sent again


def test_a_snapshot_stored_but_never_queued_is_queued_at_the_next_start(tmp_path: Path, outbox: Outbox) -> None:
    store = SnapshotStore(tmp_path / "snapshots", quota_bytes=10_000_000)
    first = spool_on(store, outbox)
    sent = first.add(jpeg_of(1))
    send_all(first)
    orphan = store.put(jpeg_of(2))  # the process died here, before queueing it
    spool_on(store, outbox)  # the next start
    assert [queued.sha for queued in outbox.pending_snapshots()] == [orphan]
    assert sent in outbox.receipted_snapshots()


def test_a_store_from_before_sent_snapshots_were_recorded_is_queued(tmp_path: Path, outbox: Outbox) -> None:
    store = SnapshotStore(tmp_path / "snapshots", quota_bytes=10_000_000)
    old = store.put(jpeg_of(3))  # stored and sent by an agent that kept no record: at most the broker took it
    spool = spool_on(store, outbox)
    assert outbox.queued_snapshots(broker_acknowledged=False) == {old} and outbox.receipted_snapshots() == set()
    send_all(spool)
    spool_on(store, outbox)  # the next start: receipted, not queued again
    assert spool.depth() == 0 and outbox.receipted_snapshots() == {old}


def test_snapshots_an_outbox_of_schema_1_had_sent_are_sent_again_and_count_as_unreceipted(tmp_path: Path) -> None:
    """Schema 1 recorded a snapshot as sent on the broker's PUBACK; a broker that lost it (issue 7) would have lost
    it for good. Migrated, it is queued again while its file exists, and thinning it is a loss the report names."""
    path = tmp_path / "outbox.sqlite"
    store = SnapshotStore(tmp_path / "snapshots", quota_bytes=10_000_000)
    kept, thinned_before = store.put(jpeg_of(4)), "ab" * 32  # the second one's file went long ago
    with sqlite3.connect(path) as db:
        db.executescript(V1_SCHEMA)
        db.executemany("INSERT INTO snapshot_sent VALUES (?)", [(kept,), (thinned_before,)])
        db.executemany("INSERT INTO meta VALUES (?, ?)", [("snapshot_sent_recorded", "1"), ("last_seq", "7")])
    with Outbox(path) as outbox:
        spool = spool_on(store, outbox)
        assert [item.sha for item in spool.pending(after=0, limit=10)] == [kept]
        assert outbox.queued_snapshots() == {kept} and not outbox.was_receipted(kept)
        store.quota_bytes = len(jpeg_of(4)) + len(jpeg_of(5)) - 1  # the next snapshot thins the re-queued one
        spool.add(jpeg_of(5))
        [payload] = thinnings(outbox)
        assert payload["snapshots"] == [kept] and payload["unsent_lost"] == [kept]


def test_thinning_takes_receipted_snapshots_first_then_broker_acknowledged_ones_and_names_those(
    tmp_path: Path, outbox: Outbox
) -> None:
    small = [jpeg_of(seed) for seed in range(4)]
    rng = np.random.default_rng(99)
    big = encode_jpeg(rng.integers(0, 255, (120, 120, 3), dtype=np.uint8), quality=90)
    total = sum(len(j) for j in small) + len(big)
    # Over the quota only with the big one, and still over it without the first one.
    quota = int(total - len(small[0]) - len(small[1]) / 2)
    assert sum(len(j) for j in small) <= quota < total
    store = SnapshotStore(tmp_path / "snapshots", quota_bytes=quota)
    spool = spool_on(store, outbox)
    a, b, c, d = [spool.add(jpeg) for jpeg in small]
    keys = {item.sha: item.key for item in spool.pending(after=0, limit=10)}
    spool.broker_acknowledged([keys[a], keys[b]])
    spool.court_receipted([a])  # a: the court holds it; b: only the broker took it; c, d: not even that
    e = spool.add(big)
    [payload] = thinnings(outbox)
    assert payload["snapshots"] == [a, b]
    assert (payload["thinned"], payload["thinned_unsent"], payload["unsent_lost"]) == (2, 1, [b])
    assert set(store.hashes()) == {c, d, e}
    assert outbox.queued_snapshots() == {c, d, e} and outbox.receipted_snapshots() == set()


def test_a_thinning_of_more_than_200_snapshots_names_every_one_over_several_reports(
    tmp_path: Path, outbox: Outbox
) -> None:
    tiny = [jpeg_of(seed) for seed in range(450)]
    big = encode_jpeg(np.random.default_rng(7).integers(0, 255, (950, 950, 3), dtype=np.uint8), quality=90)
    store = SnapshotStore(tmp_path / "snapshots", quota_bytes=sum(len(j) for j in tiny) + 1)
    spool = spool_on(store, outbox)
    hashes = [spool.add(jpeg) for jpeg in tiny]  # none sent: the link is down
    keys = {item.sha: item.key for item in spool.pending(after=0, limit=1000)}
    spool.broker_acknowledged([keys[sha] for sha in hashes[:5]])
    spool.court_receipted(hashes[:3])  # three the court holds, two only the broker took
    assert thinnings(outbox) == []
    spool.add(big)
    reports = thinnings(outbox)
    gone = [sha for sha in hashes if sha not in store]
    parts = -(-len(gone) // 200)
    assert parts >= 2  # one thinning, several reports
    assert [(r["part"], r["parts"]) for r in reports] == [(n, parts) for n in range(1, parts + 1)]
    assert all(len(r["snapshots"]) <= 200 and len(r["unsent_lost"]) <= 200 for r in reports)
    assert [sha for r in reports for sha in r["snapshots"]] == gone  # every one named once, oldest first
    assert [sha for r in reports for sha in r["unsent_lost"]] == gone[3:]  # all but what the court receipted
    assert sum(r["thinned"] for r in reports) == len(gone)
    assert sum(r["thinned_unsent"] for r in reports) == len(gone) - 3


def _stored_on_disk(directory: Path) -> int:
    """Every byte under the store's directory, half-written files included."""
    return sum(path.stat().st_size for path in directory.rglob("*") if path.is_file())


def test_the_disk_never_holds_more_than_the_quota_not_even_while_a_snapshot_is_written(
    tmp_path: Path, outbox: Outbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Room is made before a snapshot is written: at each fsync of a new file the store's directory is within the
    quota (a store that wrote first and thinned after was over it by the new snapshot until the thinning)."""
    jpegs = [jpeg_of(seed) for seed in range(40)]
    directory = tmp_path / "snapshots"
    store = SnapshotStore(directory, quota_bytes=sum(len(j) for j in jpegs) // 4)
    spool = spool_on(store, outbox)
    on_disk: list[int] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        real_fsync(fd)
        on_disk.append(_stored_on_disk(directory))

    monkeypatch.setattr(os, "fsync", fsync)
    for jpeg in jpegs:
        spool.add(jpeg)
    assert len(thinnings(outbox)) >= 2 and len(on_disk) >= len(jpegs)
    assert max(on_disk) <= store.quota_bytes
    assert all(payload["stored_bytes"] <= store.quota_bytes for payload in thinnings(outbox))


def test_a_thinning_is_reported_even_when_the_write_after_it_fails(
    tmp_path: Path, outbox: Outbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The disk fills (or fails) after room was made: the snapshot is not stored, and what was thinned for it is still
    reported and out of the send queue; the write's ENOSPC makes room for the disk too (``cause`` ``disk_full``), on
    record the same way."""
    jpegs = [jpeg_of(seed) for seed in range(6)]
    store = SnapshotStore(tmp_path / "snapshots", quota_bytes=sum(len(j) for j in jpegs[:5]))
    spool = spool_on(store, outbox)
    kept = [spool.add(jpeg) for jpeg in jpegs[:5]]
    assert thinnings(outbox) == []

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError):
        spool.add(jpegs[5])
    payload, *for_the_disk = thinnings(outbox)
    assert payload["cause"] == "quota" and for_the_disk
    assert all(report["cause"] == "disk_full" for report in for_the_disk)
    gone = [sha for report in (payload, *for_the_disk) for sha in report["snapshots"]]
    assert gone == kept[: len(gone)] and payload["thinned"] >= 1
    assert payload["unsent_lost"] == payload["snapshots"]  # none had reached the court
    assert set(store.hashes()) == set(kept) - set(gone)
    assert outbox.queued_snapshots() == set(store.hashes())
    assert for_the_disk[-1]["stored_bytes"] == store.total_bytes() + len(jpegs[5])  # what it made room for


def test_a_non_jpeg_thins_nothing(tmp_path: Path, outbox: Outbox) -> None:
    jpegs = [jpeg_of(seed) for seed in range(3)]
    store = SnapshotStore(tmp_path / "snapshots", quota_bytes=sum(len(j) for j in jpegs))
    spool = spool_on(store, outbox)
    kept = [spool.add(jpeg) for jpeg in jpegs]
    with pytest.raises(ValueError, match="not a JPEG"):
        spool.add(b"GIF89a" + b"\0" * 10_000)
    assert set(store.hashes()) == set(kept)


def test_a_snapshot_the_outbox_cannot_queue_is_not_left_stored(tmp_path: Path, outbox: Outbox) -> None:
    """The outbox's disk is full (SQLite's ``SQLITE_FULL``, for real): the snapshot that cannot be queued is removed
    again, so it is neither left out of the quota's count nor thinned later as one the court holds."""
    jpegs = [jpeg_of(seed) for seed in range(400)]
    store = SnapshotStore(tmp_path / "snapshots", quota_bytes=10_000_000)
    spool = spool_on(store, outbox)
    with sqlite3.connect(outbox.path) as db:
        outbox.lower_limits(pages=int(db.execute("PRAGMA page_count").fetchone()[0]))
    queued: list[str] = []
    with pytest.raises(OutboxError, match="full"):
        for jpeg in jpegs:
            queued.append(spool.add(jpeg))
    refused = store.address(jpegs[len(queued)])
    assert queued and refused not in store
    assert set(store.hashes()) == set(queued) == outbox.queued_snapshots()
    # The quota's count is the disk's: a quota just above what is stored thins nothing at the next snapshot's size.
    outbox.lower_limits(pages=1_000_000)
    store.quota_bytes = store.total_bytes() + len(jpegs[-1])
    spool.add(jpegs[-1])
    assert thinnings(outbox) == [] and store.total_bytes() == store.quota_bytes
