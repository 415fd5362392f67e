"""The snapshot spool across crashes and restarts, on a real store and a real outbox: a thinning cut short at any
instant leaves each picture either on disk or named lost by an ``outbox_full``; a store over a lowered quota is thinned
at start; the leftovers of a write cut short are removed, and the quota counts every file of the store's directory."""

from __future__ import annotations

import logging
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Collection, Iterator
from pathlib import Path

import pytest

from seal_agent.journal.outbox import Outbox
from seal_agent.journal.snapshot_spool import THINNING_SETTING, SnapshotSpool
from seal_agent.journal.snapshot_store import SnapshotStore
from tests.agent.spool_helpers import jpeg_of, recorder_on, thinnings


class Crash(BaseException):
    """The process dies here (a BaseException: nothing on the way catches it)."""


@pytest.fixture
def outbox(tmp_path: Path) -> Iterator[Outbox]:
    with Outbox(tmp_path / "outbox.db") as box:
        yield box


def named_lost(outbox: Outbox) -> list[str]:
    return [sha for payload in thinnings(outbox) for sha in payload["unsent_lost"]]


def silently_gone(named: Collection[str], store: SnapshotStore, outbox: Outbox) -> set[str]:
    """Pictures named (e.g. by an intrusion) that are neither on disk nor named lost: the court would never know."""
    lost = set(named_lost(outbox))
    return {sha for sha in named if sha not in store and sha not in lost}


def filled(tmp_path: Path, outbox: Outbox, count: int) -> tuple[SnapshotStore, list[str]]:
    """A store whose quota ``count`` snapshots fill; none sent (the court is unreachable)."""
    jpegs = [jpeg_of(seed) for seed in range(count)]
    store = SnapshotStore(tmp_path / "snapshots", quota_bytes=sum(len(j) for j in jpegs))
    spool = SnapshotSpool(store, recorder_on(outbox))
    return store, [spool.add(jpeg) for jpeg in jpegs]


def check_restart(tmp_path: Path, outbox: Outbox, named: list[str], quota: int) -> None:
    """The next start completes the thinning: every picture on disk or named lost once, the queue is the disk's."""
    store = SnapshotStore(tmp_path / "snapshots", quota_bytes=quota)
    SnapshotSpool(store, recorder_on(outbox))
    assert silently_gone(named, store, outbox) == set()
    lost = named_lost(outbox)
    assert len(lost) == len(set(lost))  # named once, not again by the restart
    assert not set(lost) & set(store.hashes())
    assert outbox.queued_snapshots() == set(store.hashes())
    assert not outbox.setting(THINNING_SETTING)
    assert store.total_bytes() <= quota


@pytest.mark.parametrize("dies_at_unlink", range(1, 4))
def test_a_crash_while_thinned_files_are_deleted_leaves_each_picture_or_its_loss_on_record(
    tmp_path: Path, outbox: Outbox, monkeypatch: pytest.MonkeyPatch, dies_at_unlink: int
) -> None:
    store, named = filled(tmp_path, outbox, 12)
    newest = jpeg_of(100, side=96)  # takes several of the oldest with it
    real_unlink = os.unlink
    calls = 0

    def unlink(path: str | os.PathLike[str], *args: object, **kwargs: object) -> None:
        nonlocal calls
        calls += 1
        if calls > dies_at_unlink:
            raise Crash(f"killed before unlinking {path}")
        real_unlink(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "unlink", unlink)
    with pytest.raises(Crash):
        SnapshotSpool(store, recorder_on(outbox)).add(newest)
    monkeypatch.setattr(os, "unlink", real_unlink)
    assert len(store.hashes()) == 12 - dies_at_unlink  # the kill came in the middle of the deletions
    assert silently_gone(named, store, outbox) == set()
    check_restart(tmp_path, outbox, named, store.quota_bytes)


def test_a_crash_after_the_thinning_is_recorded_and_before_any_file_goes_names_each_once(
    tmp_path: Path, outbox: Outbox
) -> None:
    store, named = filled(tmp_path, outbox, 12)
    recorder = recorder_on(outbox)
    spool = SnapshotSpool(store, recorder)

    def die() -> None:
        raise Crash("killed right after the commit")

    recorder.on_committed = die
    with pytest.raises(Crash):
        spool.add(jpeg_of(100, side=96))
    assert set(store.hashes()) == set(named)  # nothing deleted yet, and each deletion is on record
    [payload] = thinnings(outbox)
    assert payload["unsent_lost"] and set(payload["unsent_lost"]) <= set(named)
    check_restart(tmp_path, outbox, named, store.quota_bytes)
    assert [p["unsent_lost"] for p in thinnings(outbox)] == [payload["unsent_lost"]]


_ADDER = """
import os, sys, time
from pathlib import Path
_fsync = os.fsync
def slow_fsync(fd):  # a slow SD card: the window between thinning and writing is wide
    time.sleep(0.2)
    _fsync(fd)
os.fsync = slow_fsync
from seal_agent.journal.outbox import Outbox
from seal_agent.journal.snapshot_spool import SnapshotSpool
from seal_agent.journal.snapshot_store import SnapshotStore
from tests.agent.spool_helpers import jpeg_of, recorder_on
base, life, quota = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
with Outbox(base / "outbox.db") as outbox:
    spool = SnapshotSpool(SnapshotStore(base / "snapshots", quota_bytes=quota), recorder_on(outbox))
    print("ready", flush=True)
    for n in range(1000):
        print(spool.add(jpeg_of(life * 1000 + n)), flush=True)  # named once add returned
"""


def test_kill_9_while_snapshots_are_added_on_a_full_quota_never_loses_a_picture_silently(tmp_path: Path) -> None:
    """Real processes killed with SIGKILL at random instants while they add snapshots to a full store."""
    quota = 12 * len(jpeg_of(0))
    rng = random.Random(11)
    named: list[str] = []
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    for life in range(8):
        child = subprocess.Popen(
            [sys.executable, "-c", _ADDER, str(tmp_path), str(life), str(quota)],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.3, 1.2))
        child.send_signal(signal.SIGKILL)
        out, _ = child.communicate()
        named += [line for line in out.split() if len(line) == 64]
    with Outbox(tmp_path / "outbox.db") as outbox:
        assert named_lost(outbox)  # the quota was thinned, unsent pictures among them
        store = SnapshotStore(tmp_path / "snapshots", quota_bytes=quota)
        assert silently_gone(named, store, outbox) == set()
        check_restart(tmp_path, outbox, named, quota)


def test_a_store_over_a_lowered_quota_is_thinned_at_start_and_says_so(tmp_path: Path, outbox: Outbox) -> None:
    store, named = filled(tmp_path, outbox, 10)
    lowered = SnapshotStore(tmp_path / "snapshots", quota_bytes=store.total_bytes() // 3)
    spool = SnapshotSpool(lowered, recorder_on(outbox))  # the next start, with the quota lowered meanwhile
    assert lowered.total_bytes() <= lowered.quota_bytes * 0.9
    [payload] = thinnings(outbox)
    assert payload["snapshots"] == named[: len(payload["snapshots"])]  # the oldest went
    assert payload["unsent_lost"] == payload["snapshots"]  # none had reached the court
    assert payload["quota_bytes"] == lowered.quota_bytes and payload["stored_bytes"] == lowered.total_bytes()
    assert set(lowered.hashes()) == set(named) - set(payload["snapshots"]) == outbox.queued_snapshots()
    assert spool.depth() == len(lowered.hashes())


def test_leftovers_of_a_write_cut_short_are_removed_at_start_and_every_file_counts(
    tmp_path: Path, outbox: Outbox, caplog: pytest.LogCaptureFixture
) -> None:
    store, named = filled(tmp_path, outbox, 3)
    bucket = store.path(named[0]).parent
    leftover = bucket / ".tmp-k1ll3d.jpg"  # what a kill -9 during a write leaves
    leftover.write_bytes(jpeg_of(50)[:500])
    stray = tmp_path / "snapshots" / "oversized" / "stray.jpg"
    stray.parent.mkdir()
    stray.write_bytes(b"\xff\xd8" + bytes(700))
    snapshots = sum(store.path(sha).stat().st_size for sha in named)
    with caplog.at_level(logging.WARNING):
        reopened = SnapshotStore(tmp_path / "snapshots", quota_bytes=store.quota_bytes)
    assert not leftover.exists() and str(leftover) in caplog.text
    assert reopened.hashes() == named
    assert reopened.total_bytes() == snapshots + 702  # the quota counts what the directory holds
