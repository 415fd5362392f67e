"""A queued snapshot that can never be delivered leaves the queue only once a signed ``snapshot_lost`` names it (real
store, real outbox, real recorder): a file gone, corrupt bytes (re-hashed on read: never sent), over the size limit.
The event is committed before the snapshot leaves the queue, and a crash between them gives no second event."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from seal_agent.errors import OutboxError
from seal_agent.journal.outbox import Outbox
from seal_agent.journal.snapshot_losses import CORRUPT_DIR, LOSSES_SETTING, OVERSIZED_DIR
from seal_agent.journal.snapshot_spool import SnapshotSpool
from seal_agent.journal.snapshot_store import SnapshotStore
from seal_protocol import EventType, decode_envelope
from seal_protocol.signing import verify_envelope
from seal_protocol.topics import MAX_SNAPSHOT_BYTES
from tests.agent.spool_helpers import KEY, jpeg_of, recorder_on

QUOTA = 100 * 2**20


class Crash(BaseException):
    """The process dies here (a BaseException: nothing on the way catches it)."""


@pytest.fixture
def outbox(tmp_path: Path) -> Iterator[Outbox]:
    with Outbox(tmp_path / "outbox.db") as box:
        yield box


def losses(outbox: Outbox) -> list[dict[str, Any]]:
    """The payloads of the signed ``snapshot_lost`` events in ``outbox`` (each signature checked), in order."""
    found = []
    for event in outbox.pending(after=0, limit=100_000):
        envelope = decode_envelope(event.data)
        verify_envelope(envelope, KEY.verify_key)
        if envelope.type is EventType.SNAPSHOT_LOST:
            found.append(envelope.payload)
    return found


def spool_on(tmp_path: Path, outbox: Outbox) -> SnapshotSpool:
    return SnapshotSpool(SnapshotStore(tmp_path / "snapshots", quota_bytes=QUOTA), recorder_on(outbox))


def corrupt(path: Path) -> bytes:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    return bytes(data)


def test_a_queued_snapshot_whose_file_is_gone_is_signed_lost_before_it_leaves_the_queue(
    tmp_path: Path, outbox: Outbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    spool = spool_on(tmp_path, outbox)
    gone, kept = spool.add(jpeg_of(1)), spool.add(jpeg_of(2))
    spool.store.path(gone).unlink()  # a card fault, fsck, a hand: not the seal
    seen_when_forgotten: list[list[dict[str, Any]]] = []
    forget = outbox.forget_snapshots

    def watched(shas: Any) -> int:
        seen_when_forgotten.append(losses(outbox))
        return forget(shas)

    monkeypatch.setattr(outbox, "forget_snapshots", watched)
    assert [item.sha for item in spool.pending(after=0, limit=10)] == [kept]
    [lost] = losses(outbox)
    assert lost["snapshot"] == gone and lost["reason"] == "missing" and lost["kept"] is None
    assert seen_when_forgotten == [[lost]]  # committed before the queue dropped it
    assert outbox.queued_snapshots() == {kept}
    assert outbox.setting(LOSSES_SETTING) == "[]"


def test_a_corrupt_snapshot_is_set_aside_signed_lost_and_never_sent(tmp_path: Path, outbox: Outbox) -> None:
    spool = spool_on(tmp_path, outbox)
    sha = spool.add(jpeg_of(1))
    bad = corrupt(spool.store.path(sha))
    assert spool.pending(after=0, limit=10) == []  # not sent under a name its bytes do not have
    [lost] = losses(outbox)
    assert lost["snapshot"] == sha and lost["reason"] == "corrupt"
    assert lost["detail"] == f"its bytes hash to {hashlib.sha256(bad).hexdigest()}"
    assert lost["kept"] == f"{CORRUPT_DIR}/{sha}.jpg"
    assert (spool.store.directory / CORRUPT_DIR / f"{sha}.jpg").read_bytes() == bad  # kept: evidence of the fault
    assert sha not in spool.store and spool.depth() == 0
    assert spool.pending(after=0, limit=10) == []
    spool_on(tmp_path, outbox)  # a restart neither queues it again nor signs it again
    assert outbox.queued_snapshots() == set() and len(losses(outbox)) == 1


def test_a_crash_after_the_loss_is_signed_gives_no_second_event(
    tmp_path: Path, outbox: Outbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    spool = spool_on(tmp_path, outbox)
    sha = spool.add(jpeg_of(1))
    spool.store.path(sha).unlink()

    def crash(shas: Any) -> int:
        raise Crash

    monkeypatch.setattr(outbox, "forget_snapshots", crash)
    with pytest.raises(Crash):
        spool.pending(after=0, limit=10)
    assert len(losses(outbox)) == 1 and outbox.queued_snapshots() == {sha}  # still queued: never lost unrecorded
    monkeypatch.undo()
    spool_on(tmp_path, outbox)  # the restart finds it again, at start
    assert outbox.queued_snapshots() == set()
    [lost] = losses(outbox)
    assert lost["snapshot"] == sha
    assert outbox.setting(LOSSES_SETTING) == "[]"


def test_a_crash_before_a_corrupt_file_is_set_aside_gives_no_second_event(
    tmp_path: Path, outbox: Outbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    spool = spool_on(tmp_path, outbox)
    sha = spool.add(jpeg_of(1))
    bad = corrupt(spool.store.path(sha))

    def crash(store: SnapshotStore, sha: str, folder: str) -> Path:
        raise Crash

    monkeypatch.setattr(SnapshotStore, "set_aside", crash)
    with pytest.raises(Crash):
        spool.pending(after=0, limit=10)
    monkeypatch.undo()
    again = spool_on(tmp_path, outbox)
    assert again.pending(after=0, limit=10) == []
    assert [lost["snapshot"] for lost in losses(outbox)] == [sha]
    assert (again.store.directory / CORRUPT_DIR / f"{sha}.jpg").read_bytes() == bad
    assert again.depth() == 0


def test_a_queued_snapshot_missing_at_start_is_signed_lost(tmp_path: Path, outbox: Outbox) -> None:
    spool = spool_on(tmp_path, outbox)
    shas = [spool.add(jpeg_of(seed)) for seed in range(3)]
    spool.store.path(shas[1]).unlink()
    spool_on(tmp_path, outbox)
    assert [(lost["snapshot"], lost["reason"]) for lost in losses(outbox)] == [(shas[1], "missing")]
    assert outbox.queued_snapshots() == {shas[0], shas[2]}
    spool_on(tmp_path, outbox)
    assert len(losses(outbox)) == 1


def test_a_loss_the_outbox_refuses_keeps_the_snapshot_queued_and_unsent(
    tmp_path: Path, outbox: Outbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    spool = spool_on(tmp_path, outbox)
    sha = spool.add(jpeg_of(1))
    corrupt(spool.store.path(sha))
    record = spool._recorder.record

    def full(*args: Any, **kwargs: Any) -> Any:
        raise OutboxError("database or disk is full")

    monkeypatch.setattr(spool._recorder, "record", full)
    assert spool.pending(after=0, limit=10) == []  # not sent meanwhile
    assert outbox.queued_snapshots() == {sha} and losses(outbox) == []
    monkeypatch.setattr(spool._recorder, "record", record)
    assert spool.pending(after=0, limit=10) == []
    assert [lost["snapshot"] for lost in losses(outbox)] == [sha] and spool.depth() == 0


def test_an_oversized_queued_snapshot_is_signed_lost(tmp_path: Path, outbox: Outbox) -> None:
    spool = spool_on(tmp_path, outbox)
    big = spool.store.put(b"\xff\xd8" + bytes(MAX_SNAPSHOT_BYTES + 1000))  # as an agent without the limit stored it
    outbox.queue_snapshot(big)
    assert spool.pending(after=0, limit=10) == []
    [lost] = losses(outbox)
    assert lost["snapshot"] == big and lost["reason"] == "oversized" and lost["kept"] == f"{OVERSIZED_DIR}/{big}.jpg"
    assert (spool.store.directory / OVERSIZED_DIR / f"{big}.jpg").is_file()


def test_a_snapshot_thinned_while_the_courier_reads_is_not_signed_lost(tmp_path: Path, outbox: Outbox) -> None:
    """A thinning drops a snapshot from the queue, then deletes its file: a courier that listed the queue before
    finds no file, and must not take it for a loss (the thinning's ``outbox_full`` names it)."""
    spool = spool_on(tmp_path, outbox)
    sha = spool.add(jpeg_of(1))
    listed = outbox.pending_snapshots
    outbox_any: Any = outbox

    def thinned_meanwhile(**kwargs: Any) -> Any:
        found = listed(**kwargs)
        outbox.forget_snapshots([sha])
        spool.store.delete(sha)
        return found

    outbox_any.pending_snapshots = thinned_meanwhile
    assert spool.pending(after=0, limit=10) == []
    assert losses(outbox) == []
